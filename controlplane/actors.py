"""Who is acting: passed into every write so that the audit log can say who, from where and through what."""

from __future__ import annotations

import contextvars
import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from controlplane.choices import Interface

if TYPE_CHECKING:
    from controlplane.models import ApiToken, User

_request_meta: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("request_meta", default=None)


def client_ip(request: Any) -> str | None:
    """The client address: REMOTE_ADDR, or with TRUSTED_PROXY_COUNT proxies in front the address the outermost
    trusted proxy received from (the count-th entry from the right of X-Forwarded-For; entries further left are
    the client's own claims). Without the setting X-Forwarded-For is ignored: anyone can send it."""
    from django.conf import settings

    meta = request.META
    remote = meta.get("REMOTE_ADDR") or None
    count = settings.TRUSTED_PROXY_COUNT
    if count > 0:
        forwarded = [part.strip() for part in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= count:
            candidate = _ip_or_none(forwarded[-count])
            if candidate is not None:
                return candidate
    return remote


def _ip_or_none(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.removeprefix("[").removesuffix("]")))
    except ValueError:
        return None  # a proxy that writes something else is misconfigured: keep the socket's address


@dataclass(frozen=True)
class Actor:
    user: User | None = None
    token: ApiToken | None = None
    interface: str = Interface.SYSTEM
    ip: str | None = None
    user_agent: str = ""
    label: str = ""  # for system and connector actors, e.g. "connector 3f2a…"

    @classmethod
    def from_request(cls, request: Any, *, interface: str | None = None) -> Actor:
        from controlplane.models import ApiToken, User

        auth = getattr(request, "auth", None)
        token = auth if isinstance(auth, ApiToken) else None
        # Only a person is a user: a token call's request.user is a TokenPrincipal, an anonymous one nobody.
        user = getattr(request, "user", None)
        if token is not None or not isinstance(user, User) or not user.is_authenticated:
            user = None
        if interface is None:
            interface = Interface.API if request.path.startswith("/client/v4/") else Interface.UI
        return cls(
            user=user,
            token=token,
            interface=interface,
            ip=client_ip(request),
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:512],
        )

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        return cls(interface=Interface.SYSTEM, label=label)

    @classmethod
    def cli(cls, label: str = "manage.py") -> Actor:
        return cls(interface=Interface.CLI, label=label)

    @property
    def actor_type(self) -> str:
        if self.token is not None:
            return "token"
        if self.user is not None:
            return "user"
        if self.interface == Interface.CONNECTOR:
            return "connector"
        return "system"

    @property
    def display(self) -> str:
        if self.token is not None:
            return f"API token “{self.token.name}”"
        if self.user is not None:
            return self.user.email
        return self.label or self.interface
