"""Template context shared by every page of the UI shell."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils.functional import SimpleLazyObject

from controlplane.choices import NOT_AVAILABLE_YET
from controlplane.models import Membership, Organisation, User
from controlplane.prepared import PreparedQuery

# The organisation switcher's list, compiled once per process (controlplane/prepared.py): the organisations the
# signed-in user is a member of, by name. It is drawn on every page of the shell.
_USER_ORGANISATIONS = PreparedQuery(
    lambda user: Organisation.objects.filter(
        pk__in=Membership.objects.filter(user=user)
        .unscoped("the signed-in user's own memberships, for the organisation switcher")
        .values("organisation_id")
    ).order_by("display_name", "team_name"),
    user=User,
)


def _organisations(user: Any) -> list[Organisation]:
    return _USER_ORGANISATIONS.rows(user=user)


def shell(request: Any) -> dict[str, Any]:
    context: dict[str, Any] = {
        "EMAIL_OUTBOX_MODE": settings.EMAIL_OUTBOX_MODE,
        "AUTH_DOMAIN": settings.AUTH_DOMAIN,
        "CONTROLPLANE_MODE": settings.MODE,
        "PUBLIC_URL": settings.PUBLIC_URL,
        "NOT_AVAILABLE_YET": NOT_AVAILABLE_YET,
        # Shown in examples: the address this browser reaches the API on (mail links use PUBLIC_URL instead).
        "API_BASE_URL": request.build_absolute_uri("/client/v4") if hasattr(request, "build_absolute_uri") else "",
    }
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        # Lazy: only pages that draw the organisation switcher pay for the query.
        context["nav_organisations"] = SimpleLazyObject(lambda: _organisations(user))
    return context
