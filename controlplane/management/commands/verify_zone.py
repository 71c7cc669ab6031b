"""Mark a zone verified without its DNS TXT record (single-tenant installs, where the operator vouches)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from controlplane.management.base import ServiceCommand
from controlplane.models import Zone
from controlplane.services.zones import clean_zone_name, zone_mark_verified


class Command(ServiceCommand):
    help = "Mark a zone as verified (active) without checking its DNS TXT record."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("zone", help="The zone's name, e.g. example.com.")

    def handle(self, *args: Any, **options: Any) -> None:
        name = clean_zone_name(options["zone"])
        zone = (
            Zone.objects.unscoped("the operator names a zone of any organisation")
            .select_related("organisation")
            .filter(name=name)
            .first()
        )
        if zone is None:
            raise CommandError(f"No zone named {name}. An organisation adds it first (UI, API); then verify it here.")
        if zone.is_active:
            self.stdout.write(f"{zone.name} ({zone.organisation.team_name}) is already verified.")
            return
        zone_mark_verified(zone=zone, actor=self.actor)
        self.stdout.write(self.style.SUCCESS(f"{zone.name} ({zone.organisation.team_name}) is now verified."))
