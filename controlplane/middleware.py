"""Request-wide context that services cannot get from their arguments."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.contrib.messages.middleware import MessageMiddleware as DjangoMessageMiddleware
from django.http import HttpRequest, HttpResponse

from controlplane.errors import dependency_unavailable
from controlplane.ui.views.errors import service_unavailable

logger = logging.getLogger(__name__)


class RequestContextMiddleware:
    """Marks API requests so that the UI's session machinery (CSRF on cookie-less token calls) stays out."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path.startswith("/client/v4/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response


class DependencyFailureMiddleware:
    """A view that fails because a backing service is down (Redis: cache, sign-in throttles) answers 503 with a page
    (or the v4 envelope) that says so, instead of a 500."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not dependency_unavailable(exception):
            return None
        logger.warning("%s %s: a dependency is unavailable: %r", request.method, request.path, exception)
        return service_unavailable(request)


class MessageMiddleware(DjangoMessageMiddleware):
    """Django's flash messages, for the pages only: the API (`/client/v4/`) never shows one, and building the
    message storage (a cookie signer, the session backend) was ~7 % of a small API request's CPU (issue 13). A
    response of a request without a storage stores nothing, as Django's own middleware does."""

    def process_request(self, request: HttpRequest) -> None:
        if request.path.startswith("/client/v4/"):
            return
        super().process_request(request)
