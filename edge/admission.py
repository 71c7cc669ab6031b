"""The one admission step every visitor request passes, HTTP and websocket alike (Access enforcement).

For the organisation that owns the route, the per-process `OrgView` (access.runtime) says whether an Access
application covers the request and who is asking; the answer is: forward (nothing covers it, or Bypass), admit
(forward with `Cf-Access-Jwt-Assertion` and `Cf-Access-Authenticated-User-Email`), a redirect to the team
domain's login page (401 JSON for XHR), or a 403 page. On an application's own host the edge also serves
`/cdn-cgi/access/authorized` (exchanges the login's handoff code for the application's cookie), `logout` and
`get-identity`. Views are loaded once per organisation, dropped on `access` events and refreshed every 30 s."""

from __future__ import annotations

import asyncio
import html
import ipaddress
import json
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from access.events import AccessChanged
from access.login import denial_worth_logging, log_denial
from access.runtime import Kind, OrgView, decide, load_org_view, redeem_handoff, revoke, service_assertion
from edge.headers import client_address

RELOAD_SECONDS = 30.0
COOKIE = "CF_Authorization"
ACCESS_PATH = "/cdn-cgi/access/"

Response = tuple[int, list[tuple[bytes, bytes]], bytes]


class Admit:
    """Forward, adding these headers (the visitor's own `cf-access-*` headers are already stripped). A plain class
    with a slot, not a frozen dataclass: one is made per admitted request."""

    __slots__ = ("headers",)

    def __init__(self, headers: tuple[tuple[bytes, bytes], ...]) -> None:
        self.headers = headers


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


_COOKIE_NAME = COOKIE.encode()


def _cookie(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The `CF_Authorization` value of the Cookie header (the last one if repeated, quotes removed)."""
    for key, value in headers:
        if key == b"cookie" and _COOKIE_NAME in value:
            return _cookie_value(value)
    return None


def _cookie_value(value: bytes) -> str | None:
    """Split by hand: http.cookies.SimpleCookie took half of the admission step's time on an 800-character token
    (bench/access)."""
    found = None
    for part in value.split(b";"):
        name, _, raw = part.strip().partition(b"=")
        if name == _COOKIE_NAME:
            found = raw.strip()
    if found is None:
        return None
    if len(found) >= 2 and found[:1] == found[-1:] == b'"':
        found = found[1:-1]
    return found.decode("latin-1")


# Parsed once per distinct value (a browser sends the same Cookie header on every request): pure functions of
# their input, so remembering them changes no answer. Bounded: emptied when full; long values are not kept.
MEMO_SIZE = 1024
MEMO_VALUE_LENGTH = 4096
_MISSING = object()
_cookie_memo: dict[bytes, str | None] = {}
_ip_memo: dict[str, Any] = {}


def _session_cookie(headers: list[tuple[bytes, bytes]]) -> str | None:
    """`_cookie(headers)`, remembered per Cookie header value; the same str comes back for the same header, so its
    hash is computed once for the token caches (access.runtime) that key on it."""
    for key, value in headers:
        if key == b"cookie" and _COOKIE_NAME in value:
            token = _cookie_memo.get(value, _MISSING)
            if token is _MISSING:
                token = _cookie_value(value)
                if len(value) <= MEMO_VALUE_LENGTH:
                    if len(_cookie_memo) >= MEMO_SIZE:
                        _cookie_memo.clear()
                    _cookie_memo[value] = token
            return token  # type: ignore[return-value]
    return None


_country_name: list[bytes] = []  # [] until read: the header the front proxy sets, b"" when not trusted


def _country_header() -> bytes:
    """settings.ACCESS_COUNTRY_HEADER (lower case) when a trusted proxy sets it, else b"": read once (each access to
    Django's settings object runs a Python-level __getattribute__), again after a test changes a setting."""
    if not _country_name:
        name = settings.ACCESS_COUNTRY_HEADER if settings.TRUSTED_PROXY_COUNT else ""
        _country_name.append((name or "").lower().encode())
    return _country_name[0]


@receiver(setting_changed)
def _settings_changed(**kwargs: Any) -> None:
    _country_name.clear()


def _client_ip(text: str) -> Any:
    """`ipaddress.ip_address(text)` (None if empty or not an address), remembered per text: ~5 µs each time."""
    ip = _ip_memo.get(text, _MISSING)
    if ip is _MISSING:
        try:
            ip = ipaddress.ip_address(text) if text else None
        except ValueError:
            ip = None
        if len(_ip_memo) >= MEMO_SIZE:
            _ip_memo.clear()
        _ip_memo[text] = ip
    return ip


def _page(status: int, title: str, text: str, request_id: str, *, as_json: bool) -> Response:
    if as_json:
        body = json.dumps({"success": False, "errors": [{"code": status, "message": text}], "ray_id": request_id})
        content_type = b"application/json"
    else:
        body = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{html.escape(title)}</title></head><body style="font-family:system-ui,sans-serif;max-width:36rem;'
            f'margin:3rem auto;padding:0 1rem;color:#1f2933"><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>'
            f'<p style="color:#52606d">Decision id (Ray ID): <code>{request_id}</code></p></body></html>'
        )
        content_type = b"text/html; charset=utf-8"
    data = body.encode()
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(data)).encode()),
        (b"cache-control", b"no-store"),
        (b"cf-ray", request_id.encode()),
    ]
    return status, headers, data


def _redirect(location: str, request_id: str, cookies: list[str] = ()) -> Response:  # type: ignore[assignment]
    headers = [
        (b"location", location.encode("latin-1", "replace")),
        (b"content-length", b"0"),
        (b"cache-control", b"no-store"),
        (b"cf-ray", request_id.encode()),
    ]
    headers += [(b"set-cookie", cookie.encode("latin-1")) for cookie in cookies]
    return 302, headers, b""


def _wants_json(headers: list[tuple[bytes, bytes]]) -> bool:
    if (_header(headers, b"x-requested-with") or "").lower() == "xmlhttprequest":
        return True
    accept = _header(headers, b"accept") or ""
    return "application/json" in accept and "text/html" not in accept


def _in_db_thread(function: Any, *args: Any) -> Any:
    """Run in a hub database thread: a connection left broken by a database restart is replaced first."""
    from django.db import close_old_connections

    close_old_connections()
    return function(*args)


class Gate:
    def __init__(self) -> None:
        self.client_address = client_address
        self.views: dict[uuid.UUID, OrgView] = {}
        self._loading: dict[uuid.UUID, asyncio.Future] = {}
        self._generation: dict[uuid.UUID, int] = {}

    # -- the per-organisation views ----------------------------------------------------------------------------

    async def on_event(self, event: AccessChanged) -> None:
        org = event.organisation_id
        self._generation[org] = self._generation.get(org, 0) + 1
        self.views.pop(org, None)

    async def view(self, hub: Any, org: uuid.UUID) -> OrgView:
        view = self.views.get(org)
        if view is not None:
            if time.monotonic() - view.loaded_at > RELOAD_SECONDS and org not in self._loading:
                asyncio.ensure_future(self._load(hub, org))  # serve the current view while the new one loads
            return view
        return await self._load(hub, org)

    async def _load(self, hub: Any, org: uuid.UUID) -> OrgView:
        pending = self._loading.get(org)
        if pending is not None:
            return await asyncio.shield(pending)
        generation = self._generation.get(org, 0)
        future = self._loading[org] = asyncio.ensure_future(hub.db(_in_db_thread, load_org_view, org))
        try:
            view = await future
        finally:
            self._loading.pop(org, None)
        if self._generation.get(org, 0) == generation:
            self.views[org] = view
        return view

    # -- one request -------------------------------------------------------------------------------------------

    async def admit(self, hub: Any, scope: dict[str, Any], org: uuid.UUID, host: str, request_id: str):
        """None (forward as is), Admit(headers), or a Response tuple."""
        view = self.views.get(org)
        if view is None or time.monotonic() - view.loaded_at > RELOAD_SECONDS:
            view = await self.view(hub, org)
        if view.empty:
            return None
        path = scope.get("path") or "/"
        headers = scope.get("headers") or []
        ip_text, scheme = self.client_address(scope, headers)
        if path.startswith(ACCESS_PATH):
            action = path[len(ACCESS_PATH) :]
            special = await self.special(hub, view, scope, host, action, scheme, ip_text, request_id)
            if special is not None:
                return special
        country = None
        country_header = _country_header()
        if country_header:
            raw = _header(headers, country_header) or ""
            country = raw.upper() if len(raw) == 2 and raw.isalpha() else None
        admission = decide(
            view,
            host=host,
            path=path,
            ip=_client_ip(ip_text),
            country=country,
            cookie_token=_session_cookie(headers) or _header(headers, b"cf-access-token"),
            client_id=_header(headers, b"cf-access-client-id"),
            client_secret=_header(headers, b"cf-access-client-secret"),
        )
        kind = admission.kind
        if kind is Kind.FORWARD:
            return None
        if kind is Kind.ADMIT:
            return Admit(admission.headers)  # encoded once per session (access.runtime.identity_headers_for)
        app = admission.app
        assert app is not None
        if kind is Kind.SERVICE:
            key = (app.id, admission.client_id)
            cached = view.service_assertions.get(key)
            if cached is None or cached[1] <= time.time():
                cached = await hub.db(_in_db_thread, service_assertion, org, app, admission.client_id)
                view.service_assertions[key] = cached
            return Admit(((b"cf-access-jwt-assertion", cached[0].encode()),))
        as_json = _wants_json(headers)
        if kind is Kind.LOGIN:
            if as_json:
                return _page(401, "Sign in needed", f"Sign in to {app.name} first.", request_id, as_json=True)
            query = scope.get("query_string") or b""
            original = f"{scheme}://{_header(headers, b'host') or host}{path}" + (
                "?" + query.decode("latin-1") if query else ""
            )
            login = f"{view.team_url}/cdn-cgi/access/login/{host}?kid={app.aud}&redirect_url={quote(original, safe='')}"
            return _redirect(login, request_id)
        if denial_worth_logging(org, app.id, admission.email, ip_text):  # the 403's decision id, on the access log
            await hub.db(
                _in_db_thread, log_denial, org, app, admission.email, ip_text, country, admission.reason, request_id
            )
        if app.app.custom_deny_url:
            return _redirect(app.app.custom_deny_url, request_id)
        message = app.app.custom_deny_message or (
            f"You are signed in as {admission.email}, which no policy of {app.name} admits."
            if admission.email
            else f"This request is not admitted to {app.name}."
        )
        return _page(403, "Access denied", message, request_id, as_json=as_json)

    async def special(
        self,
        hub: Any,
        view: OrgView,
        scope: dict[str, Any],
        host: str,
        action: str,
        scheme: str,
        ip: str,
        request_id: str,
    ) -> Response | None:
        """/cdn-cgi/access/{authorized,logout,get-identity} on an application's host."""
        assert view.compiled is not None
        app = view.compiled.match(host, "/") or next(
            (a for a in view.compiled.apps if any(d.covers(host, d.path or "/") for d in a.destinations)), None
        )
        if app is None:
            return None
        headers = scope.get("headers") or []
        query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
        secure = "; Secure" if scheme == "https" else ""
        if action == "authorized":
            code = (query.get("code") or [""])[0]
            redeemed = await hub.db(_in_db_thread, redeem_handoff, view.organisation_id, code)
            if redeemed is None:
                return _page(
                    400, "Sign-in link expired", "Sign in again from the application.", request_id, as_json=False
                )
            token, seconds, app_id = redeemed
            target_app = next((a for a in view.compiled.apps if a.id == app_id), None)
            if target_app is None or not any(d.covers(host, d.path or "/") for d in target_app.destinations):
                return _page(
                    400, "Wrong application", "This sign-in is for another application.", request_id, as_json=False
                )
            target = (query.get("redirect_url") or ["/"])[0]
            parts = urlsplit(target)
            if parts.hostname and parts.hostname.lower() != host:
                target = "/"
            elif parts.hostname:
                target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
            if not target.startswith("/") or target.startswith("//"):
                target = "/"
            same_site = {"none": "None", "lax": "Lax", "strict": "Strict"}[target_app.app.same_site_cookie_attribute]
            if same_site == "None" and not secure:
                same_site = "Lax"  # browsers refuse SameSite=None without Secure
            http_only = "; HttpOnly" if target_app.app.http_only_cookie_attribute else ""
            cookie = f"{COOKIE}={token}; Path=/; Max-Age={seconds}; SameSite={same_site}{http_only}{secure}"
            return _redirect(target, request_id, [cookie])
        claims = None
        token = _cookie(headers)
        if token:
            from access.runtime import _session_claims

            claims = _session_claims(view, token, app)
        if action == "logout":
            if claims is not None:
                await hub.db(_in_db_thread, revoke, view.organisation_id, claims["email"])
                await self.on_event(AccessChanged(view.organisation_id))
            body = _page(
                200,
                "You are logged out",
                "Your session has ended on every application of this team.",
                request_id,
                as_json=False,
            )
            status, response_headers, data = body
            response_headers.append((b"set-cookie", f"{COOKIE}=; Path=/; Max-Age=0{secure}".encode()))
            return status, response_headers, data
        if action == "get-identity":
            if claims is None:
                return _page(401, "No session", "Sign in first.", request_id, as_json=True)
            identity = {
                "email": claims["email"],
                "user_uuid": claims["sub"],
                "iat": claims["iat"],
                "idp": {"id": view.login_method, "type": "onetimepin"},
                "geo": {"country": claims.get("country", "")},
                "ip": ip,
            }
            data = json.dumps(identity).encode()
            return (
                200,
                [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                    (b"cache-control", b"no-store"),
                ],
                data,
            )
        return None
