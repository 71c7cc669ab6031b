"""Access (login pages on team domains, enforcement in the edge)."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from .env import env_int, env_str

# The request header carrying the visitor's country (two letters), set by the operator's front proxy (e.g.
# `CF-IPCountry` behind Cloudflare, or a GeoIP module of nginx). Empty: no country is known and `geo` rules never
# match. Set it only behind a proxy that sets (overwrites) the header on every request: it is read only when a
# trusted proxy is declared (TRUSTED_PROXY_COUNT).
ACCESS_COUNTRY_HEADER = env_str("ACCESS_COUNTRY_HEADER", "")

# The PIN email: tries after the first when the mail server fails, and the wait before the first of them, doubled
# each time (2 s, 4 s, 8 s … at most 60 s). After the last one the failure is on the Access log.
ACCESS_EMAIL_RETRIES = env_int("ACCESS_EMAIL_RETRIES", 5)
ACCESS_EMAIL_RETRY_MS = env_int("ACCESS_EMAIL_RETRY_MS", 2000)
if not 0 <= ACCESS_EMAIL_RETRIES <= 20 or not 0 < ACCESS_EMAIL_RETRY_MS <= 60_000:
    raise ImproperlyConfigured("ACCESS_EMAIL_RETRIES must be 0–20 and ACCESS_EMAIL_RETRY_MS 1–60000")
