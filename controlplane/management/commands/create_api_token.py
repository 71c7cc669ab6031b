"""Create an API token for an organisation; the secret is printed alone on the last line, once."""

from __future__ import annotations

import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.utils import timezone

from controlplane.choices import TOKEN_RESOURCES, Level
from controlplane.management.base import ServiceCommand
from controlplane.services.tokens import api_token_create


def parse_permissions(text: str) -> dict[str, str]:
    """`tunnels:edit,zones:read` → {"tunnels": "edit", "zones": "read"} (validated by the service)."""
    grants: dict[str, str] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        resource, sep, level = item.partition(":")
        if not sep:
            raise ValidationError(
                {"permissions": f"“{item}” should look like <resource>:<read|edit>, e.g. tunnels:edit."}
            )
        grants[resource.strip()] = level.strip()
    return grants


class Command(ServiceCommand):
    help = (
        "Create an API token for an organisation. The token is printed once, alone on the last line of output: "
        "TOKEN=$(python manage.py create_api_token --organisation my-team --name ci --all | tail -n 1)"
    )

    def add_arguments(self, parser: Any) -> None:
        resources = ", ".join(resource.value for resource in TOKEN_RESOURCES)
        parser.add_argument("--organisation", required=True, help="Team name of the organisation.")
        parser.add_argument("--name", required=True, help="A name to recognise the token by.")
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument(
            "--permissions", help=f"Comma-separated <resource>:<read|edit> over {resources}. Edit implies read."
        )
        group.add_argument("--all", action="store_true", help="Edit on every resource group a token can hold.")
        parser.add_argument("--expires-in-days", type=int, help="Expire the token after this many days.")
        parser.add_argument(
            "--allow-ip",
            action="append",
            default=[],
            metavar="CIDR",
            help="Only accept the token from this IP address or range; repeat for several.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        organisation = self.get_organisation(options["organisation"])
        if options["all"]:
            grants = {resource.value: Level.EDIT.value for resource in TOKEN_RESOURCES}
        else:
            grants = parse_permissions(options["permissions"])
        expires_at = None
        if options["expires_in_days"] is not None:
            if options["expires_in_days"] < 1:
                raise CommandError("--expires-in-days must be at least 1.")
            expires_at = timezone.now() + datetime.timedelta(days=options["expires_in_days"])
        token, raw = api_token_create(
            organisation=organisation,
            name=options["name"],
            grants=grants,
            actor=self.actor,
            allowed_networks=options["allow_ip"],
            expires_at=expires_at,
        )
        permissions = ", ".join(f"{resource}:{level}" for resource, level in sorted(token.grants.items()))
        self.stdout.write(f"Created API token “{token.name}” (id {token.id.hex}) for {organisation.team_name}.")
        self.stdout.write(f"  permissions: {permissions}")
        self.stdout.write(f"  allowed IPs: {', '.join(token.allowed_networks) or 'any'}")
        expires = token.expires_at.isoformat(timespec="seconds") if token.expires_at else "never"
        self.stdout.write(f"  expires:     {expires}")
        self.stdout.write("The token is shown only now; use it as `Authorization: Bearer <token>`:")
        self.stdout.write(raw)
