"""Access: identity providers, applications and their destinations, policies (reusable or app-scoped), groups,
lists and service tokens. Rules are kept in Cloudflare's JSON shapes and parsed by `access.logic.rules`."""

from __future__ import annotations

import secrets
import uuid

from django.db import models

from controlplane.scoping import OrgOwnedModel


def new_aud() -> str:
    """An application's audience tag: 64 hex characters, fixed for the application's life."""
    return secrets.token_hex(32)


class IdentityProvider(OrgOwnedModel):
    """A way to sign in. Every organisation has a one-time PIN provider; others (OIDC, …) fit the same row."""

    class Type(models.TextChoices):
        ONE_TIME_PIN = "onetimepin", "One-time PIN"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=255)
    type = models.CharField(max_length=32, choices=Type.choices)
    config = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation"], condition=models.Q(type="onetimepin"), name="access_one_otp_idp_per_org"
            )
        ]

    def __str__(self) -> str:
        return self.name


class AccessGroup(OrgOwnedModel):
    """A reusable set of include / require / exclude rules, referenced by policies as `{"group": {"id": …}}`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=255)
    include = models.JSONField(default=list)
    require = models.JSONField(default=list, blank=True)
    exclude = models.JSONField(default=list, blank=True)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organisation", "name"], name="access_group_unique_name")]

    def __str__(self) -> str:
        return self.name


class AccessList(OrgOwnedModel):
    """A list of email addresses or IP ranges, referenced as `email_list` / `ip_list` rules."""

    class Type(models.TextChoices):
        EMAIL = "EMAIL", "Emails"
        IP = "IP", "IP ranges"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=255)
    type = models.CharField(max_length=8, choices=Type.choices)
    description = models.CharField(max_length=500, blank=True)
    items = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organisation", "name"], name="access_list_unique_name")]

    def __str__(self) -> str:
        return self.name


class ServiceToken(OrgOwnedModel):
    """Machine credentials sent as `CF-Access-Client-Id` / `CF-Access-Client-Secret`. The secret is shown once
    and stored as its SHA-256 (it is 32 random bytes: a slow hash adds nothing, and the edge checks it often)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=255)
    client_id = models.CharField(max_length=64, unique=True)
    secret_hash = models.CharField(max_length=64)
    duration = models.CharField(max_length=32, default="8760h")
    expires_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Application(OrgOwnedModel):
    """A self-hosted application: up to five destinations (hostname + optional path) behind Access."""

    class SameSite(models.TextChoices):
        NONE = "none", "None"
        LAX = "lax", "Lax"
        STRICT = "strict", "Strict"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=255)
    type = models.CharField(max_length=32, default="self_hosted")
    aud = models.CharField(max_length=64, unique=True, default=new_aud, editable=False)
    destinations = models.JSONField(default=list)
    session_duration = models.CharField(max_length=32, default="24h")
    allowed_idps = models.JSONField(default=list, blank=True)
    auto_redirect_to_identity = models.BooleanField(default=False)
    app_launcher_visible = models.BooleanField(default=True)
    custom_deny_message = models.CharField(max_length=1024, blank=True)
    custom_deny_url = models.CharField(max_length=1024, blank=True)
    logo_url = models.CharField(max_length=1024, blank=True)
    same_site_cookie_attribute = models.CharField(max_length=8, choices=SameSite.choices, default=SameSite.LAX)
    http_only_cookie_attribute = models.BooleanField(default=True)
    tokens_revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "created_at"]

    def __str__(self) -> str:
        return self.name

    @property
    def domain(self) -> str:
        return self.destinations[0]["uri"] if self.destinations else ""


class Policy(OrgOwnedModel):
    """Allow / Block / Bypass / Service Auth with include (OR), require (AND) and exclude (NOT) rules. Reusable
    policies belong to the organisation and are attached to applications; app-scoped ones belong to one app."""

    class Decision(models.TextChoices):
        ALLOW = "allow", "Allow"
        DENY = "deny", "Block"
        BYPASS = "bypass", "Bypass"
        NON_IDENTITY = "non_identity", "Service Auth"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=255)
    decision = models.CharField(max_length=16, choices=Decision.choices)
    include = models.JSONField(default=list)
    require = models.JSONField(default=list, blank=True)
    exclude = models.JSONField(default=list, blank=True)
    session_duration = models.CharField(max_length=32, blank=True)
    reusable = models.BooleanField(default=True)
    application = models.ForeignKey(
        Application, null=True, blank=True, on_delete=models.CASCADE, related_name="own_policies"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(reusable=True, application__isnull=True)
                | models.Q(reusable=False, application__isnull=False),
                name="access_policy_reusable_xor_application",
            )
        ]

    def __str__(self) -> str:
        return self.name


class ApplicationPolicy(OrgOwnedModel):
    """A policy attached to an application, at a precedence unique within the application (1 is evaluated
    first within its pass)."""

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="policy_links")
    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="application_links")
    precedence = models.PositiveIntegerField()

    class Meta:
        ordering = ["precedence"]
        constraints = [
            models.UniqueConstraint(fields=["application", "policy"], name="access_app_policy_unique"),
            models.UniqueConstraint(fields=["application", "precedence"], name="access_app_precedence_unique"),
        ]


class AccessSettings(OrgOwnedModel):
    """The organisation's Access settings (Cloudflare's `access/organizations`): global session, key rotation,
    login page design."""

    session_duration = models.CharField(max_length=32, default="24h")
    key_rotation_interval_days = models.PositiveIntegerField(default=42)
    auto_redirect_to_identity = models.BooleanField(default=False)
    login_design = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organisation"], name="access_settings_one_per_org")]


class SigningKey(OrgOwnedModel):
    """An RSA key pair that signs the organisation's Access tokens. The newest unretired key signs; a retired key
    still verifies until `retired_at` + the grace period (7 days), as Cloudflare's previous key does."""

    kid = models.CharField(max_length=64, unique=True)
    private_key_ciphertext = models.TextField(editable=False)
    public_jwk = models.JSONField()
    certificate_pem = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]


class LoginCode(OrgOwnedModel):
    """A one-time PIN sent by email. Stored as an HMAC; void after its expiry, its first use or 5 wrong tries."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="+")
    email = models.CharField(max_length=320)
    pin_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    used_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    send_error = models.CharField(max_length=300, blank=True)

    class Meta:
        indexes = [models.Index(fields=["organisation", "email", "-created_at"])]


class HandoffCode(OrgOwnedModel):
    """The single-use code that carries a successful login from the team domain to the application's own host,
    where the edge exchanges it for the application's cookie (60 seconds)."""

    code_hash = models.CharField(max_length=64, unique=True)
    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="+")
    email = models.CharField(max_length=320)
    login_method = models.CharField(max_length=64)
    country = models.CharField(max_length=2, blank=True)
    session_seconds = models.PositiveIntegerField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)


class UserRevocation(OrgOwnedModel):
    """Tokens of this identity issued before `revoked_at` are refused (logout, or an admin's "revoke user")."""

    email = models.CharField(max_length=320)
    revoked_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organisation", "email"], name="access_revocation_per_email")]


class AccessRequest(OrgOwnedModel):
    """One login attempt or decision, in Cloudflare's `access/logs/access_requests` shape. Bypass is not logged."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    user_email = models.CharField(max_length=320, blank=True)
    ip_address = models.CharField(max_length=64, blank=True)
    app_uid = models.CharField(max_length=64, blank=True)
    app_domain = models.CharField(max_length=512, blank=True)
    action = models.CharField(max_length=32, default="login")
    connection = models.CharField(max_length=32, default="onetimepin")
    allowed = models.BooleanField(default=False)
    reason = models.CharField(max_length=300, blank=True)
    ray_id = models.CharField(max_length=32, blank=True)
    country = models.CharField(max_length=2, blank=True)

    class Meta:
        ordering = ["-created_at"]
