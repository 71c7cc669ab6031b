"""Organisations (tenants), their members and invitations."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower

from controlplane.choices import ROLE_SCOPES, InvitationStatus, Role
from controlplane.scoping import OrgOwnedModel
from controlplane.validators import validate_team_name


class Organisation(models.Model):
    """A tenant. Appears in the API as an account whose id is the 32-hex form of `id`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team_name = models.CharField(max_length=63, unique=True, validators=[validate_team_name])
    display_name = models.CharField(max_length=100)
    require_2fa = models.BooleanField(
        default=True, help_text="Members must sign in with a second factor; those without one are made to enrol."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["display_name", "team_name"]

    def __str__(self) -> str:
        return self.display_name or self.team_name

    @property
    def account_id(self) -> str:
        return self.id.hex

    @property
    def team_domain(self) -> str:
        return f"{self.team_name}.{settings.AUTH_DOMAIN}"


class Membership(OrgOwnedModel):
    """A user's role in one organisation."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=32, choices=Role.choices, default=Role.READ_ONLY)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(fields=["organisation", "user"], name="controlplane_membership_one_per_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organisation_id} as {self.role}"

    @property
    def scopes(self) -> frozenset[str]:
        return ROLE_SCOPES[self.role]


class Invitation(OrgOwnedModel):
    """An emailed invitation to join an organisation with a role. The link's secret is stored hashed."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField()
    role = models.CharField(max_length=32, choices=Role.choices, default=Role.READ_ONLY)
    token_hash = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=16, choices=InvitationStatus.choices, default=InvitationStatus.PENDING)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    responded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                "organisation",
                Lower("email"),
                condition=models.Q(status="pending"),
                name="controlplane_invitation_one_pending_per_email",
            ),
        ]

    def __str__(self) -> str:
        return f"invitation of {self.email}"

    def clean(self) -> None:
        if self.email:
            self.email = self.email.strip().lower()
        if self.role not in Role.values:
            raise ValidationError({"role": "Unknown role."})
