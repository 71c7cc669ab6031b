"""Access (login pages on team domains, enforcement in the edge)."""

from __future__ import annotations

from .env import env_str

# The request header carrying the visitor's country (two letters), set by the operator's front proxy (e.g.
# `CF-IPCountry` behind Cloudflare, or a GeoIP module of nginx). Empty: no country is known and `geo` rules never
# match. Set it only behind a proxy that sets (overwrites) the header on every request: it is read only when a
# trusted proxy is declared (TRUSTED_PROXY_COUNT).
ACCESS_COUNTRY_HEADER = env_str("ACCESS_COUNTRY_HEADER", "")
