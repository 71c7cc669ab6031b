"""What the operator commands share: the CLI actor, turning service errors into clean exits, sign-in links."""

from __future__ import annotations

import contextlib
from typing import Any

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.http import Http404
from django.urls import NoReverseMatch, Resolver404, resolve, reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from controlplane.actors import Actor
from controlplane.models import Organisation, User


def describe_error(exc: Exception) -> str:
    """One readable line from a service error (field errors as `field: message`)."""
    if isinstance(exc, ValidationError):
        if hasattr(exc, "error_dict"):
            parts = []
            for field, messages in exc.message_dict.items():
                text = " ".join(messages)
                parts.append(text if field == "__all__" else f"{field}: {text}")
            return "; ".join(parts)
        return " ".join(exc.messages)
    return str(exc) or exc.__class__.__name__


class ServiceCommand(BaseCommand):
    """A thin command over the services: errors they raise end the command with exit code 1 and a message,
    never a traceback."""

    actor = Actor.cli()

    def execute(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute(*args, **options)
        except (ValidationError, PermissionDenied, Http404) as exc:
            raise CommandError(describe_error(exc)) from None

    def get_organisation(self, team_name: str) -> Organisation:
        organisation = Organisation.objects.filter(team_name=(team_name or "").strip().lower()).first()
        if organisation is None:
            known = ", ".join(Organisation.objects.order_by("team_name").values_list("team_name", flat=True)[:20])
            hint = f" Known: {known}." if known else ""
            raise CommandError(f"No organisation with team name “{team_name}”.{hint}")
        return organisation

    def get_user(self, email: str) -> User:
        user = User.objects.filter(email__iexact=(email or "").strip()).first()
        if user is None:
            raise CommandError(f"No user with email “{email}”.")
        return user


def set_password_link(user: User) -> str:
    """A one-time link to choose a password (Django's password-reset token: it stops working once the password
    changes or the user signs in, and after PASSWORD_RESET_TIMEOUT).

    The page lives at /account/set-password/<uidb64>/<token>/; until the UI serves that path, the link points at
    its password-reset confirmation page, which takes the same token."""
    uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    path = f"/account/set-password/{uidb64}/{token}/"
    try:
        resolve(path)
    except Resolver404:
        with contextlib.suppress(NoReverseMatch):
            path = reverse("ui:password-reset-confirm", kwargs={"uidb64": uidb64, "token": token})
    return f"{settings.PUBLIC_URL}{path}"


def link_lifetime() -> str:
    hours = settings.PASSWORD_RESET_TIMEOUT / 3600
    return f"{hours:g} hour{'s' if hours != 1 else ''}"
