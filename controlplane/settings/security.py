"""Transport security (HSTS, HTTPS redirect) and the production guards on debug mode.

The Content-Security-Policy is not a setting: it is fixed by the templates (controlplane/security_headers.py).
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from .base import DEBUG
from .env import PRODUCTION, env_bool, env_int

# Debug pages show settings, SQL and tracebacks to whoever triggers an error: never in production.
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG must not be on when CONTROLPLANE_MODE=production")

# Production is served over HTTPS behind a TLS proxy that sets X-Forwarded-Proto (SECURE_PROXY_SSL_HEADER):
# plain-HTTP requests to the control plane are redirected and browsers are told to use HTTPS only (HSTS).
# Health checks (/healthz, /readyz) answer before the redirect; public hostnames are the edge's, not Django's.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=PRODUCTION)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=False)
if SECURE_HSTS_SECONDS < 0:
    raise ImproperlyConfigured(f"SECURE_HSTS_SECONDS must be 0 (off) or more, got {SECURE_HSTS_SECONDS}")

# Asking browsers to preload HSTS for the whole domain is the domain owner's decision (SECURE_HSTS_PRELOAD=1),
# not a deployment defect, so `check --deploy` does not warn about leaving it off.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
