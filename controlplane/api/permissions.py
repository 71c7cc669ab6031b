from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission


class DenyAll(BasePermission):
    """The default: a view that does not say who may call it answers nobody."""

    def has_permission(self, request: Any, view: Any) -> bool:
        return False


class IsAuthenticatedPrincipal(BasePermission):
    def has_permission(self, request: Any, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated)
