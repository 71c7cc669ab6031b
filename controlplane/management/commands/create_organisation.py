"""Create an organisation and its first Super Administrator, without the UI (installations, automation)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.core.validators import validate_email
from django.db import transaction

from controlplane.management.base import ServiceCommand, link_lifetime, set_password_link
from controlplane.models import Organisation, User
from controlplane.services.organisations import organisation_create


def get_or_create_admin(email: str) -> tuple[User, bool]:
    """The user with this email, created with an unusable password if absent (they set one through the link)."""
    email = (email or "").strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError({"admin_email": f"“{email}” is not a valid email address."}) from None
    user = User.objects.filter(email__iexact=email).first()
    if user is not None:
        return user, False
    return User.objects.create_user(email), True


class Command(ServiceCommand):
    help = (
        "Create an organisation and make --admin-email its first Super Administrator (the user is created if "
        "needed). Prints a one-time link to set the password."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("team_name", help="Team name: lower-case letters, digits and hyphens (1–63).")
        parser.add_argument("--admin-email", required=True, help="Email of the first Super Administrator.")
        parser.add_argument("--display-name", default="", help="Name shown in the UI (default: the team name).")
        parser.add_argument(
            "--no-require-2fa",
            action="store_true",
            help="Do not require a second factor from members (new organisations require it by default).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        team_name = options["team_name"].strip()
        if not team_name:
            raise CommandError("Give a team name (lower-case letters, digits and hyphens).")
        if Organisation.objects.filter(team_name__iexact=team_name).exists():
            raise CommandError(f"The team name “{team_name}” is already taken.")
        with transaction.atomic():
            user, created = get_or_create_admin(options["admin_email"])
            organisation = organisation_create(
                team_name=team_name,
                display_name=options["display_name"],
                owner=user,
                actor=self.actor,
                require_2fa=not options["no_require_2fa"],
            )
        self.stdout.write(
            self.style.SUCCESS(f"Created organisation “{organisation}” ({organisation.team_name}).")
            + f"\n  account id:          {organisation.account_id}"
            + f"\n  team domain:         {organisation.team_domain}"
            + f"\n  Super Administrator: {user.email}"
            + (" (new account)" if created else " (existing account)")
            + f"\n  two-factor required: {'yes' if organisation.require_2fa else 'no'}"
        )
        if created or not user.has_usable_password():
            self.stdout.write(f"One-time sign-in link (choose a password; valid {link_lifetime()}):")
        else:
            self.stdout.write(
                f"{user.email} can sign in with their existing password, or reset it with this one-time link "
                f"(valid {link_lifetime()}):"
            )
        self.stdout.write(f"  {set_password_link(user)}")
