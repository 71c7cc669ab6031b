"""First run: create an organisation and its Super Administrator with a generated password, once.

`make run` calls this before serving. On later runs it only reminds where the control plane is."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.conf import settings
from django.db import transaction

from controlplane.management.base import ServiceCommand, link_lifetime, set_password_link
from controlplane.management.commands.create_organisation import get_or_create_admin
from controlplane.models import Organisation
from controlplane.services.organisations import organisation_create

DEFAULT_TEAM = "my-team"
DEFAULT_ADMIN_EMAIL = "admin@example.com"


def generate_password() -> str:
    # ~120 bits, grouped so it can be read aloud and typed: xxxx-xxxx-xxxx-xxxx-xxxx
    alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
    return "-".join("".join(secrets.choice(alphabet) for _ in range(5)) for _ in range(5))


class Command(ServiceCommand):
    help = (
        "Create the first organisation (BOOTSTRAP_TEAM, default my-team) and its Super Administrator "
        "(BOOTSTRAP_ADMIN_EMAIL, default admin@example.com) with a generated password, if there is no "
        "organisation yet; print how to sign in. Does nothing but remind the URL when organisations exist."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if Organisation.objects.exists():
            count = Organisation.objects.count()
            self.stdout.write(
                f"Control plane: {settings.PUBLIC_URL}/ ({count} organisation{'s' if count != 1 else ''}). "
                "Lost the password? python manage.py signin_link <email>"
            )
            return
        team_name = os.environ.get("BOOTSTRAP_TEAM") or DEFAULT_TEAM
        email = os.environ.get("BOOTSTRAP_ADMIN_EMAIL") or DEFAULT_ADMIN_EMAIL
        password = os.environ.get("BOOTSTRAP_ADMIN_PASSWORD") or generate_password()
        with transaction.atomic():
            user, _ = get_or_create_admin(email)
            organisation = organisation_create(team_name=team_name, owner=user, actor=self.actor)
            user.set_password(password)
            user.save(update_fields=["password"])
        rule = "=" * 78
        lines = [
            rule,
            "  The control plane is set up. Sign in:",
            "",
            f"    URL:       {settings.PUBLIC_URL}/",
            f"    Email:     {user.email}",
            f"    Password:  {password}",
            "",
            f"  Organisation “{organisation.team_name}” (team domain {organisation.team_domain}); you are its",
            "  Super Administrator. New organisations require two-factor authentication: at your first sign-in",
            "  you will be asked to enrol an authenticator app (TOTP) and to keep your backup codes.",
            "",
            f"  Or choose your own password with this one-time link (valid {link_lifetime()}):",
            f"    {set_password_link(user)}",
            "",
            "  This is shown once. A new link later: python manage.py signin_link " + user.email,
            rule,
        ]
        self.stdout.write("\n".join(lines))
