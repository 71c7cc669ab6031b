"""How API callers prove who they are: an API token as a bearer, or the UI's session (with its second factor)."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, SessionAuthentication

from controlplane.actors import client_ip
from controlplane.services.tokens import TokenRejected, api_token_authenticate


class TokenPrincipal:
    """`request.user` for token calls: authenticated, but no person."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    pk = None
    email = ""

    def __init__(self, token: Any) -> None:
        self.token = token

    def __str__(self) -> str:
        return f"API token {self.token.name}"


class ApiTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Any) -> tuple[TokenPrincipal, Any] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            if request.META.get("HTTP_X_AUTH_KEY") or request.META.get("HTTP_X_AUTH_USER_SERVICE_KEY"):
                raise exceptions.AuthenticationFailed(
                    "Global API keys are not supported: create an API token and send it as "
                    "Authorization: Bearer <token>."
                )
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        raw = raw.strip()
        if not raw:
            raise exceptions.AuthenticationFailed("Empty bearer token.")
        try:
            token = api_token_authenticate(raw, ip=client_ip(request))
        except TokenRejected as exc:
            raise exceptions.AuthenticationFailed(exc.message) from None
        return TokenPrincipal(token), token

    def authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="api"'


class SessionOtpAuthentication(SessionAuthentication):
    """The signed-in UI user (CSRF enforced on writes). Per-organisation 2FA rules apply in access resolution."""
