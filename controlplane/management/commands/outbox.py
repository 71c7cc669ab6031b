"""Read the mail kept in the outbox (embedded mode, no EMAIL_URL): invitations, PINs, password resets."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import CommandError
from django.utils import timezone

from controlplane.management.base import ServiceCommand
from controlplane.models import Organisation, OutboxMessage


class Command(ServiceCommand):
    help = "Print the messages kept in the outbox, newest first, with their bodies."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--limit", type=int, default=10, help="At most this many messages (default 10).")
        parser.add_argument("--to", help="Only messages to this address.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1.")
        recipient = (options["to"] or "").strip().lower()
        messages = OutboxMessage.objects.unscoped("the operator reads the installation's whole outbox").order_by(
            "-created_at", "-id"
        )
        if recipient:
            # `to` is a JSON list; containment lookups on JSON are not portable to SQLite, so match it here.
            messages = messages.filter(to__icontains=recipient)
        shown = []
        for message in messages.iterator():
            if recipient and recipient not in [address.lower() for address in message.to]:
                continue
            shown.append(message)
            if len(shown) >= options["limit"]:
                break
        if not shown:
            note = "" if settings.EMAIL_OUTBOX_MODE else " (EMAIL_URL is set: mail is sent by SMTP, not kept here)"
            self.stdout.write(f"The outbox is empty{' for ' + recipient if recipient else ''}{note}.")
            return
        teams = dict(
            Organisation.objects.filter(pk__in={m.organisation_id for m in shown if m.organisation_id}).values_list(
                "pk", "team_name"
            )
        )
        for message in shown:
            created = timezone.localtime(message.created_at).strftime("%Y-%m-%d %H:%M:%S %Z")
            self.stdout.write("─" * 78)
            self.stdout.write(f"Date:         {created}")
            self.stdout.write(f"From:         {message.from_email}")
            self.stdout.write(f"To:           {', '.join(message.to)}")
            self.stdout.write(f"Subject:      {message.subject}")
            if message.organisation_id:
                self.stdout.write(f"Organisation: {teams.get(message.organisation_id, message.organisation_id)}")
            self.stdout.write("")
            self.stdout.write(message.body.rstrip())
        self.stdout.write("─" * 78)
