"""The Cloudflare v4 envelope: {success, errors, messages, result, result_info}, for results and errors alike."""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.compat import LONG_SEPARATORS, SHORT_SEPARATORS
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.utils import encoders

from controlplane.access import NotSignedIn, SecondFactorRequired
from controlplane.errors import Conflict, dependency_unavailable

logger = logging.getLogger(__name__)

# Error codes, in the spirit of Cloudflare's: clients match on them, so they never change meaning.
CODE_VALIDATION = 1004
CODE_NOT_FOUND = 7003
CODE_METHOD = 7001
CODE_AUTH = 10000
CODE_FORBIDDEN = 9109
CODE_THROTTLED = 971
CODE_CONFLICT = 1061
CODE_PARSE = 1003
CODE_SERVER = 1000
CODE_TOO_LARGE = 1013
CODE_UNAVAILABLE = 1015


def envelope(result: Any = None, *, errors: list[dict[str, Any]] | None = None, result_info: Any = None) -> dict:
    body: dict[str, Any] = {"success": not errors, "errors": errors or [], "messages": [], "result": result}
    if result_info is not None:
        body["result_info"] = result_info
    return body


_drf_default = encoders.JSONEncoder().default


def _json_default(value: Any) -> Any:
    """DRF's JSONEncoder.default, with the API's two common types first: DRF tries a dozen isinstance checks on
    each, through its encoder class (~3x the cost of dumping a page of tunnels as plain strings, issue 13)."""
    kind = type(value)
    if kind is uuid.UUID:
        return str(value)
    if kind is datetime.datetime:
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    return _drf_default(value)


# orjson writes what json.dumps writes (DRF's settings: compact, not ASCII-escaped) for every type but floats (its
# exponents: `1e16` for `1e+16`; NaN as null where DRF refuses it) and what DRF's encoder refuses (enums that are not
# str or int, dataclasses, ...). Datetimes and dataclasses are left to `_json_default` (DRF's text), an integer of
# more than 64 bits or a key that is not a string makes orjson refuse and the response is written by json.dumps.
# tests/controlplane/api/test_envelope_json.py holds the bytes equal.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def float_free(response: Response) -> Response:
    """Mark a response whose data holds no float nor Decimal (the view's own data shapes say so: ids, names, dates,
    integers): its JSON is written by orjson, faster than json.dumps, the same bytes (issue 13)."""
    response.float_free = True
    return response


class EnvelopeRenderer(JSONRenderer):
    """Wraps successful results; error bodies are already enveloped by `exception_handler`."""

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        context = renderer_context or {}
        response = context.get("response")
        if response is not None and not getattr(response, "enveloped", False):
            data = envelope(data, result_info=getattr(response, "result_info", None))
        if data is None or "indent" in context or (accepted_media_type and ";" in accepted_media_type):
            return super().render(data, accepted_media_type, renderer_context)  # pretty-printed, or no body
        if getattr(response, "float_free", False) and self.compact and not self.ensure_ascii:
            try:
                out = orjson.dumps(data, default=_json_default, option=_ORJSON_OPTIONS)
            except TypeError:  # orjson.JSONEncodeError: what it does not write as json.dumps would, or refuses
                pass
            else:
                return out.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
        # What JSONRenderer.render does without indent, byte for byte (tests/controlplane/api/test_envelope_json.py).
        text = json.dumps(
            data,
            default=_json_default,
            ensure_ascii=self.ensure_ascii,
            allow_nan=not self.strict,
            separators=SHORT_SEPARATORS if self.compact else LONG_SEPARATORS,
        )
        return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


def _flatten(detail: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """(path, message) for every leaf of a DRF/Django error tree; `non_field_errors` and `__all__` add no segment."""
    if isinstance(detail, dict):
        items: list[tuple[tuple[str, ...], str]] = []
        for key, value in detail.items():
            segment = () if key in ("non_field_errors", "__all__") else (str(key),)
            items.extend(_flatten(value, path + segment))
        return items
    if isinstance(detail, list):
        items = []
        for index, value in enumerate(detail):
            # A list of messages belongs to its field; a list of objects (or of lists) is indexed.
            items.extend(
                _flatten(value, path + (str(index),)) if isinstance(value, (dict, list)) else [(path, str(value))]
            )
        return items
    return [(path, str(detail))]


def validation_errors(detail: Any) -> list[dict[str, Any]]:
    """One v4 error per invalid field, its JSON pointer in `source.pointer` (`/policies/0/effect`)."""
    errors = []
    for path, message in _flatten(detail):
        entry: dict[str, Any] = {
            "code": CODE_VALIDATION,
            "message": f"{'.'.join(path)}: {message}" if path else message,
        }
        if path:
            entry["source"] = {"pointer": "/" + "/".join(path)}
        errors.append(entry)
    return errors or [{"code": CODE_VALIDATION, "message": "Invalid request."}]


@contextlib.contextmanager
def fields_as_sent(paths: dict[str, tuple[str, ...]]) -> Iterator[None]:
    """Report a service's field errors under the request's names: services speak of `role` or `allowed_networks`,
    while the caller sent `roles` or `condition.request_ip.in`."""
    try:
        yield
    except DjangoValidationError as exc:
        if not hasattr(exc, "error_dict") or not set(exc.error_dict) & set(paths):
            raise
        detail: dict[str, Any] = {}
        for field, messages in exc.message_dict.items():
            *parents, leaf = paths.get(field, (field,))
            node = detail
            for parent in parents:
                node = node.setdefault(parent, {})
            node[leaf] = messages
        raise exceptions.ValidationError(detail) from None


def error_response(status_code: int, errors: list[dict[str, Any]], headers: dict[str, str] | None = None) -> Response:
    response = Response(envelope(None, errors=errors), status=status_code, headers=headers)
    response.enveloped = True
    return response


def _detail(exc: DjangoValidationError) -> Any:
    return exc.message_dict if hasattr(exc, "error_dict") else exc.messages


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every error the API can produce, as a v4 envelope with a proper status. An unexpected exception is logged
    with its traceback and answered as an enveloped 500, so that clients always get JSON."""
    if isinstance(exc, NotSignedIn):
        exc = exceptions.NotAuthenticated()
    if isinstance(exc, Conflict):
        # 400, not 409: the SDK retries 409s, and a clash with existing state does not clear by itself.
        response = error_response(400, [{**error, "code": CODE_CONFLICT} for error in validation_errors(_detail(exc))])
        response.headers["x-should-retry"] = "false"
        return response
    if isinstance(exc, DjangoValidationError):
        return error_response(status.HTTP_400_BAD_REQUEST, validation_errors(_detail(exc)))
    if isinstance(exc, Http404):
        message = str(exc) if str(exc) else "Not found."
        path = context["request"].path if context.get("request") is not None else ""
        return error_response(404, [{"code": CODE_NOT_FOUND, "message": f"{message} ({path})" if path else message}])
    if isinstance(exc, (DjangoPermissionDenied, SecondFactorRequired)):
        return error_response(403, [{"code": CODE_FORBIDDEN, "message": str(exc) or "Forbidden."}])
    if isinstance(exc, exceptions.ValidationError):
        return error_response(400, validation_errors(exc.detail))
    if isinstance(exc, exceptions.ParseError):
        return error_response(400, [{"code": CODE_PARSE, "message": f"Invalid request body: {exc.detail}"}])
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        return error_response(
            401, [{"code": CODE_AUTH, "message": str(exc.detail)}], headers={"WWW-Authenticate": 'Bearer realm="api"'}
        )
    if isinstance(exc, exceptions.PermissionDenied):
        return error_response(403, [{"code": CODE_FORBIDDEN, "message": str(exc.detail)}])
    if isinstance(exc, exceptions.NotFound):
        return error_response(404, [{"code": CODE_NOT_FOUND, "message": str(exc.detail)}])
    if isinstance(exc, exceptions.MethodNotAllowed):
        return error_response(405, [{"code": CODE_METHOD, "message": str(exc.detail)}])
    if isinstance(exc, exceptions.Throttled):
        headers = {"Retry-After": str(int(exc.wait))} if exc.wait else None
        return error_response(429, [{"code": CODE_THROTTLED, "message": str(exc.detail)}], headers=headers)
    if isinstance(exc, exceptions.APIException):
        code = CODE_TOO_LARGE if exc.status_code == 413 else CODE_SERVER
        return error_response(
            exc.status_code,
            validation_errors(exc.detail) if exc.status_code == 400 else [{"code": code, "message": str(exc.detail)}],
        )
    if isinstance(exc, (RequestDataTooBig, TooManyFieldsSent)):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return error_response(413, [{"code": CODE_TOO_LARGE, "message": f"Request body larger than {limit} bytes."}])
    if dependency_unavailable(exc):
        logger.warning("a dependency is unavailable: %r", exc)
        return error_response(
            503,
            [{"code": CODE_UNAVAILABLE, "message": "Temporarily unavailable; try again shortly."}],
            headers={"Retry-After": "5"},
        )
    if isinstance(exc, (ValueError, DataError)) and "NUL (0x00)" in str(exc):
        # PostgreSQL refuses text holding NUL; a query parameter a view passed on unchecked is bad input, not a bug
        # worth a 500 (DRF's own fields refuse NUL before it gets this far).
        return error_response(400, [{"code": CODE_VALIDATION, "message": "Text cannot contain NUL characters."}])
    logger.exception("unhandled error in %s", context.get("view").__class__.__name__, exc_info=exc)
    return error_response(500, [{"code": CODE_SERVER, "message": "Internal error; it has been logged."}])
