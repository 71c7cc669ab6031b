"""Request-wide context that services cannot get from their arguments."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class RequestContextMiddleware:
    """Marks API requests so that the UI's session machinery (CSRF on cookie-less token calls) stays out."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path.startswith("/client/v4/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response
