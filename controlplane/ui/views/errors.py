"""Pages for requests that fail before or outside a view's own handling: too large, malformed, or arriving while a
backing service is down. API paths get the v4 envelope instead of a page."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.defaultfilters import filesizeformat
from django.template.loader import render_to_string

from controlplane.api.envelope import CODE_TOO_LARGE, CODE_UNAVAILABLE, CODE_VALIDATION, envelope

API_PREFIX = "/client/v4/"


def _problem(request: HttpRequest, status: int, code: int, heading: str, message: str, hint: str = "") -> HttpResponse:
    if request.path.startswith(API_PREFIX):
        response: HttpResponse = JsonResponse(
            envelope(None, errors=[{"code": code, "message": message}]), status=status
        )
    else:
        # Rendered without the request: its context processors read the Host, which may be the very problem
        # (DisallowedHost is a 400 too).
        context = {"heading": heading, "message": message, "hint": hint}
        response = HttpResponse(render_to_string("ui/errors/problem.html", context), status=status)
    if status == 503:
        response["Retry-After"] = "5"
    return response


def bad_request(request: HttpRequest, exception: Any = None) -> HttpResponse:
    """Django's handler400 (a SuspiciousOperation anywhere in the stack): a body over the limit is a 413."""
    if isinstance(exception, (RequestDataTooBig, TooManyFieldsSent)):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return _problem(
            request,
            413,
            CODE_TOO_LARGE,
            "Request too large",
            f"The data sent is larger than this server accepts ({filesizeformat(limit)}).",
            "Send less at once: shorter text, or fewer items per request.",
        )
    return _problem(request, 400, CODE_VALIDATION, "Bad request", "The request could not be understood.")


def service_unavailable(request: HttpRequest) -> HttpResponse:
    return _problem(
        request,
        503,
        CODE_UNAVAILABLE,
        "Temporarily unavailable",
        "A service this server depends on is not answering, so your request was not carried out.",
        "Try again in a few moments; if this persists, tell your administrator.",
    )
