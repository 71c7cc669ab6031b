"""Django REST framework and the OpenAPI schema."""

from __future__ import annotations

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "controlplane.api.authentication.ApiTokenAuthentication",
        "controlplane.api.authentication.SessionOtpAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["controlplane.api.permissions.DenyAll"],
    "DEFAULT_RENDERER_CLASSES": ["controlplane.api.envelope.EnvelopeRenderer"],
    "DEFAULT_PARSER_CLASSES": ["controlplane.api.parsers.BoundedJSONParser"],
    # The same Accept header selects the same renderer: remembered (controlplane/api/negotiation.py).
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "controlplane.api.negotiation.MemoContentNegotiation",
    "DEFAULT_PAGINATION_CLASS": "controlplane.api.pagination.V4Pagination",
    "EXCEPTION_HANDLER": "controlplane.api.envelope.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "controlplane.api.schema.EnvelopeAutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_THROTTLE_RATES": {},
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Zero Trust control plane API",
    "DESCRIPTION": (
        "Cloudflare v4-shaped API for tunnels, Access and origin certificates. Every response is wrapped in the "
        "v4 envelope {success, errors, messages, result, result_info}. Authenticate with `Authorization: Bearer "
        "<API token>`."
    ),
    "VERSION": "4",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI's assets come from drf-spectacular-sidecar, served by this installation (no CDN).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/client/v4",
    # Paths as the SDK and Cloudflare's docs write them (/accounts/{account_id}/…), under this server URL.
    "SCHEMA_PATH_PREFIX_TRIM": True,
    "SERVERS": [{"url": "/client/v4"}],
    # Several resources have a `status` or `type` field with different choices: name each set.
    "ENUM_NAME_OVERRIDES": {
        "MemberStatusEnum": ["accepted", "pending"],
        "TokenStatusEnum": ["active", "disabled", "expired"],
        "ZoneTypeEnum": ["full", "partial", "secondary", "internal"],
        "AccessListTypeEnum": ["EMAIL", "IP"],
        "IdentityProviderTypeEnum": ["onetimepin"],
        "ZoneInputTypeEnum": ["full"],
    },
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "controlplane.api.schema.postprocess_add_envelope_components",
    ],
}
