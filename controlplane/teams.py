"""Team domains: `<team name>.<AUTH_DOMAIN>`, served with the scheme and port of PUBLIC_URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings


def team_url(team_name: str) -> str:
    """`<scheme>://<team>.<AUTH_DOMAIN>[:port]`: the team domain's address (and the `iss` of its Access tokens)."""
    public = urlsplit(settings.PUBLIC_URL)
    port = f":{public.port}" if public.port and public.port not in (80, 443) else ""
    return f"{public.scheme or 'https'}://{team_name}.{settings.AUTH_DOMAIN}{port}"
