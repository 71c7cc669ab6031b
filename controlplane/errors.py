"""Errors that services raise. The API and the UI each turn them into their own presentation."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404

__all__ = ["Conflict", "Http404", "NotFound", "PermissionDenied", "ValidationError"]


class NotFound(Http404):
    """A missing row and another tenant's row look the same."""


class Conflict(ValidationError):
    """The request is valid on its own but clashes with existing state (a name already taken)."""
