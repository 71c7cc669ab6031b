"""Print a one-time link with which a user chooses a new password (lost password, first sign-in)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from controlplane.management.base import ServiceCommand, link_lifetime, set_password_link


class Command(ServiceCommand):
    help = "Print a one-time link for the user with this email to set a new password."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("email")

    def handle(self, *args: Any, **options: Any) -> None:
        user = self.get_user(options["email"])
        if not user.is_active:
            raise CommandError(f"{user.email} is deactivated; a sign-in link would not work.")
        self.stdout.write(f"One-time link for {user.email} to set a password (valid {link_lifetime()}):")
        self.stdout.write(set_password_link(user))
