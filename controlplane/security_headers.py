"""Content-Security-Policy on every response: the UI runs only its own static scripts and styles.

Templates carry no inline <script>, no on* handler attribute and no style attribute; behaviour lives in static JS
files wired up through data-* attributes. A page that needs more (the API docs' Swagger UI) sets its own header,
which this middleware leaves alone.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

CSP_HEADER = "Content-Security-Policy"

# connect-src 'self' covers the live-status websocket (ws/wss on this host) in CSP Level 3 browsers.
UI_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'self'",
        "form-action 'self'",
    ]
)

# Swagger UI (drf-spectacular-sidecar, served locally): its page has an inline <style> block and the UI sets
# inline styles and data: images; scripts still come only from this server (the split view serves the init script
# as a file).
API_DOCS_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'self'",
        "form-action 'self'",
    ]
)


class ContentSecurityPolicyMiddleware:
    """Adds the UI policy to every response that has not chosen its own."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault(CSP_HEADER, UI_POLICY)
        return response
