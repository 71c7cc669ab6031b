"""Errors that services raise. The API and the UI each turn them into their own presentation."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["Conflict", "Http404", "NotFound", "PermissionDenied", "ValidationError", "dependency_unavailable"]


class NotFound(Http404):
    """A missing row and another tenant's row look the same."""


class Conflict(ValidationError):
    """The request is valid on its own but clashes with existing state (a name already taken)."""


def dependency_unavailable(exc: BaseException) -> bool:
    """True for the failure of a backing service (Redis: the cache that holds sign-in throttles) rather than of this
    code: the request answers 503, and the client's retry a little later is the remedy."""
    return isinstance(exc, (RedisConnectionError, RedisTimeoutError))
