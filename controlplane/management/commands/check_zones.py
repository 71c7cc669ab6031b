"""Look up the verification TXT record of every pending zone now (the same check the UI's button runs)."""

from __future__ import annotations

from typing import Any

from controlplane.choices import ZoneStatus
from controlplane.management.base import ServiceCommand
from controlplane.models import Zone
from controlplane.services.zones import clean_zone_name, zone_check_verification


class Command(ServiceCommand):
    help = "Check the DNS TXT record of pending zones and activate those whose record matches."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("zones", nargs="*", help="Only these zones (default: every pending zone).")

    def handle(self, *args: Any, **options: Any) -> None:
        pending = (
            Zone.objects.unscoped("the operator checks pending zones of every organisation")
            .select_related("organisation")
            .filter(status=ZoneStatus.PENDING)
            .order_by("name")
        )
        if options["zones"]:
            pending = pending.filter(name__in=[clean_zone_name(name) for name in options["zones"]])
        zones = list(pending)
        if not zones:
            self.stdout.write("No pending zones.")
            return
        for zone in zones:
            zone = zone_check_verification(zone=zone, actor=self.actor)
            if zone.is_active:
                self.stdout.write(self.style.SUCCESS(f"{zone.name}: verified"))
            else:
                self.stdout.write(f"{zone.name}: pending — {zone.last_check_error}")
