"""Mail kept instead of sent, in embedded mode (no EMAIL_URL)."""

from __future__ import annotations

import uuid

from django.db import models

from controlplane.scoping import OrgOwnedModel


class OutboxMessage(OrgOwnedModel):
    """One email as it would have been sent. Messages about an organisation carry it, and only its members with
    audit access read them in the UI; installation-wide mail (password resets) has none and is read by the
    operator with `manage.py outbox`. The one organisation-owned model whose organisation may be empty: it says so
    in `installation_level_rows`, scopes never match those rows, and `.installation_level()` reads them."""

    installation_level_rows = "installation-wide mail (password resets, sign-in notices) that no organisation owns"

    organisation = models.ForeignKey(
        "controlplane.Organisation", on_delete=models.CASCADE, related_name="+", null=True, blank=True
    )
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    from_email = models.CharField(max_length=254)
    to = models.JSONField(default=list)
    subject = models.CharField(max_length=998)
    body = models.TextField()
    html_body = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.subject} → {', '.join(self.to)}"
