"""The dashboard's "add an application" wizard: the application and, optionally, a new policy of its own,
saved together or not at all."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from access.models import Application
from access.services.applications import application_save
from access.services.policies import policy_save
from controlplane.actors import Actor
from controlplane.models import Organisation


def application_save_with_policy(
    *,
    organisation: Organisation,
    actor: Actor,
    data: dict[str, Any],
    app: Application | None = None,
    new_policy: dict[str, Any] | None = None,
) -> Application:
    """`application_save`, then (in the same transaction) `new_policy` created as the application's own policy,
    evaluated after the ones in `data["policies"]`. Errors about the new policy are keyed `policy_<field>` so that
    they cannot be mistaken for the application's own fields (both have a `name`)."""
    with transaction.atomic():
        app = application_save(organisation=organisation, actor=actor, data=data, app=app)
        if new_policy is not None:
            try:
                policy_save(organisation=organisation, actor=actor, data=new_policy, application=app)
            except ValidationError as exc:
                if not hasattr(exc, "error_dict"):
                    raise
                raise ValidationError(
                    {f"policy_{field}": errors for field, errors in exc.message_dict.items()}
                ) from None
    return app
