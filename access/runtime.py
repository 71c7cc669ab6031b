"""What the edge needs to decide a request, per organisation, loaded in one go and cached per process.

`load_org_view` (sync: the edge runs it in a database thread) gathers the organisation's compiled applications
and policies, its verifying keys, service tokens and revocations. `decide` then answers from memory: no database,
no signing, and a verified session token is remembered until the view is reloaded, so a request with a valid
cookie costs a dict lookup and one policy evaluation (bench/access)."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import jwt

from access import keys as access_keys
from access.logic.engine import Outcome, evaluate
from access.logic.rules import Subject
from access.selectors import CompiledApp, CompiledOrg, compile_org

TOKEN_CACHE = 4096
MAX_TOKEN_LENGTH = 8192
MATCH_CACHE = 4096
MAX_MATCH_PATH = 512
_UNMATCHED: Any = object()


@dataclass(frozen=True)
class ServiceTokenEntry:
    id: str
    secret_hash: str
    expires_at: float | None


@dataclass
class OrgView:
    organisation_id: uuid.UUID
    team_name: str = ""
    compiled: CompiledOrg | None = None
    keys: dict[str, Any] = field(default_factory=dict)
    issuer: str = ""
    team_url: str = ""
    service_tokens: dict[str, ServiceTokenEntry] = field(default_factory=dict)
    revocations: dict[str, float] = field(default_factory=dict)
    login_method: str = ""
    loaded_at: float = field(default_factory=time.monotonic)
    verified: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    service_assertions: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)
    # Per application: whether its decision depends on the request (IP, country, service token) or only on the
    # identity; for the latter, a session's admission is remembered for the view's life (policies cannot change
    # under a view: an `access` event replaces it), so a valid cookie costs its checks and a dict lookup.
    network_free: dict[str, bool] = field(default_factory=dict)
    admissions: OrderedDict[tuple[str, str], Admission] = field(default_factory=OrderedDict)
    # Per session token: the identity header lines the edge adds to an admitted request, encoded once (the
    # assertion is ~800 bytes). The token's checks (expiry, revocations) still run on every request before they
    # are used, and they live and die with the view (an `access` event, a key rotation, a reload replace it).
    identity_headers: OrderedDict[str, tuple[tuple[bytes, bytes], ...]] = field(default_factory=OrderedDict)
    # (host, path) -> the application that covers it (or None): the destination index's answer, remembered for the
    # view's life (the applications cannot change under a view). Bounded: emptied when full.
    matches: dict[tuple[str, str], CompiledApp | None] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.compiled is None or not self.compiled.apps


def load_org_view(organisation_id: uuid.UUID) -> OrgView:
    """Sync: the edge runs it in a database thread (edge.admission closes stale connections first)."""
    from access.models import ServiceToken, UserRevocation
    from access.services.directory import one_time_pin_provider
    from controlplane.models import Organisation

    organisation = Organisation.objects.filter(pk=organisation_id).first()
    view = OrgView(organisation_id=organisation_id)
    if organisation is None:
        return view
    compiled = compile_org(organisation)
    view.team_name = organisation.team_name
    if not compiled.apps:
        return view
    view.compiled = compiled
    view.keys = access_keys.public_keys(access_keys.verifying_keys(organisation))
    view.issuer = access_keys.issuer(organisation)
    view.team_url = access_keys.team_url(organisation.team_name)
    view.login_method = str(one_time_pin_provider(organisation).pk)
    for token in ServiceToken.objects.for_org(organisation):
        expires = token.expires_at.timestamp() if token.expires_at else None
        view.service_tokens[token.client_id] = ServiceTokenEntry(str(token.pk), token.secret_hash, expires)
    for email, revoked_at in UserRevocation.objects.for_org(organisation).values_list("email", "revoked_at"):
        view.revocations[email] = revoked_at.timestamp()
    return view


class Kind(Enum):
    FORWARD = "forward"  # not covered by an application, or bypassed
    ADMIT = "admit"  # forward with the identity headers
    LOGIN = "login"  # no session: send to the login page (401 for XHR)
    DENY = "deny"  # a session (or service token) that no policy admits
    SERVICE = "service"  # admitted by a service token: needs a signed assertion


@dataclass(frozen=True)
class Admission:
    kind: Kind
    app: CompiledApp | None = None
    token: str = ""
    email: str = ""
    service_token_id: str = ""
    client_id: str = ""
    reason: str = ""
    # ADMIT: `Cf-Access-Jwt-Assertion` (exactly the session's token) and `Cf-Access-Authenticated-User-Email`,
    # encoded once per session (identity_headers_for).
    headers: tuple[tuple[bytes, bytes], ...] = ()


FORWARD = Admission(Kind.FORWARD)


def _session_claims(view: OrgView, token: str, app: CompiledApp) -> dict[str, Any] | None:
    claims = view.verified.get(token)
    if claims is None:
        if len(token) > MAX_TOKEN_LENGTH or not view.keys:
            return None
        try:
            claims = access_keys.verify(token, view.keys, audience=app.aud, issuer_url=view.issuer)
        except jwt.InvalidTokenError:
            return None
        if claims.get("type") != "app" or not isinstance(claims.get("email"), str):
            return None
        view.verified[token] = claims
        if len(view.verified) > TOKEN_CACHE:
            view.verified.popitem(last=False)
    now = time.time()
    if claims["exp"] <= now or app.aud not in claims.get("aud", ()):
        return None
    revoked_app = app.app.tokens_revoked_at
    if revoked_app is not None and claims["iat"] <= revoked_app.timestamp():
        return None
    revoked_user = view.revocations.get(claims["email"])
    if revoked_user is not None and claims["iat"] <= revoked_user:
        return None
    return claims


def service_token(view: OrgView, client_id: str, secret: str) -> ServiceTokenEntry | None:
    entry = view.service_tokens.get(client_id)
    if entry is None:
        return None
    digest = hashlib.sha256(secret.encode()).hexdigest()
    if not hmac.compare_digest(digest, entry.secret_hash):
        return None
    if entry.expires_at is not None and entry.expires_at <= time.time():
        return None
    return entry


def decide(
    view: OrgView,
    *,
    host: str,
    path: str,
    ip: Any,
    country: str | None,
    cookie_token: str | None,
    client_id: str | None,
    client_secret: str | None,
) -> Admission:
    """The admission of one request, from memory."""
    if view.compiled is None:
        return FORWARD
    key = (host, path)
    app = view.matches.get(key, _UNMATCHED)
    if app is _UNMATCHED:
        app = view.compiled.match(host, path)
        if len(path) <= MAX_MATCH_PATH:
            if len(view.matches) >= MATCH_CACHE:
                view.matches.clear()
            view.matches[key] = app
    if app is None:
        return FORWARD
    directory = view.compiled.directory
    if client_id and client_secret:
        entry = service_token(view, client_id, client_secret)
        if entry is not None:
            verdict = evaluate(app.policies, Subject(ip=ip, country=country, service_token_id=entry.id), directory)
            if verdict.outcome is Outcome.BYPASS:
                return FORWARD
            if verdict.outcome is Outcome.SERVICE_AUTH:
                return Admission(Kind.SERVICE, app, service_token_id=entry.id, client_id=client_id)
            return Admission(Kind.DENY, app, reason=verdict.explain())
    claims = _session_claims(view, cookie_token, app) if cookie_token else None
    if claims is None:
        verdict = evaluate(app.policies, Subject(ip=ip, country=country), directory)
        if verdict.outcome is Outcome.BYPASS:
            return FORWARD
        return Admission(Kind.LOGIN, app, reason=verdict.explain())
    memo = _network_free(view, app)
    key = (app.id, cookie_token or "")
    if memo:
        remembered = view.admissions.get(key)
        if remembered is not None:
            return remembered
    subject = Subject(email=claims["email"], login_method=view.login_method, ip=ip, country=country)
    verdict = evaluate(app.policies, subject, directory)
    if verdict.outcome is Outcome.BYPASS:
        admission = FORWARD
    elif verdict.outcome in (Outcome.ALLOW, Outcome.SERVICE_AUTH):
        token = cookie_token or ""
        headers = identity_headers_for(view, token, claims["email"])
        admission = Admission(Kind.ADMIT, app, token=token, email=claims["email"], headers=headers)
    else:
        admission = Admission(Kind.DENY, app, email=claims["email"], reason=verdict.explain())
    if memo:
        view.admissions[key] = admission
        if len(view.admissions) > TOKEN_CACHE:
            view.admissions.popitem(last=False)
    return admission


def identity_headers_for(view: OrgView, token: str, email: str) -> tuple[tuple[bytes, bytes], ...]:
    """The identity header lines of an admitted session, encoded once per token for the view's life (a token
    names one identity: its verified claims' email)."""
    headers = view.identity_headers.get(token)
    if headers is None:
        headers = (
            (b"cf-access-jwt-assertion", token.encode()),
            (b"cf-access-authenticated-user-email", email.encode()),
        )
        view.identity_headers[token] = headers
        if len(view.identity_headers) > TOKEN_CACHE:
            view.identity_headers.popitem(last=False)
    return headers


_REQUEST_SELECTORS = frozenset({"ip", "ip_list", "geo", "service_token", "any_valid_service_token"})


def _network_free(view: OrgView, app: CompiledApp) -> bool:
    known = view.network_free.get(app.id)
    if known is None:
        directory = view.compiled.directory if view.compiled else None
        known = not any(_request_dependent(policy.rules, directory, 0) for policy in app.policies)
        view.network_free[app.id] = known
    return known


def _request_dependent(rules: Any, directory: Any, depth: int) -> bool:
    for rule in rules.rules():
        if rule.kind in _REQUEST_SELECTORS:
            return True
        if rule.kind == "group":
            group = directory.groups.get(rule.value) if directory else None
            if group is None or depth >= 4 or _request_dependent(group, directory, depth + 1):
                return True  # unknown or too deep: never remembered
    return False


def service_assertion(organisation_id: uuid.UUID, app: CompiledApp, client_id: str) -> tuple[str, float]:
    """A signed token for a service-token request (sync: signing needs the private key from the database)."""
    from controlplane.models import Organisation

    organisation = Organisation.objects.get(pk=organisation_id)
    seconds = 86400
    claims = access_keys.service_token_claims(organisation, audience=[app.aud], client_id=client_id, seconds=seconds)
    return access_keys.sign(organisation, claims), time.time() + seconds - 300


def redeem_handoff(organisation_id: uuid.UUID, raw: str) -> tuple[str, int, str] | None:
    """Exchange a handoff code for the application's session token: (token, seconds, application id), or None."""
    from access.login import handoff_redeem
    from access.models import Application

    code = handoff_redeem(raw)
    if code is None or code.organisation_id != organisation_id:
        return None
    app = Application.objects.for_org(code.organisation).filter(pk=code.application_id).first()
    if app is None:
        return None
    seconds = max(code.session_seconds, 1)
    claims = access_keys.identity_claims(
        code.organisation, kind="app", audience=[app.aud], email=code.email, seconds=seconds, country=code.country
    )
    return access_keys.sign(code.organisation, claims), seconds, str(app.pk)


def revoke(organisation_id: uuid.UUID, email: str) -> None:
    """Logout on an application's host (sync: the edge runs it in a database thread)."""
    from access.services.settings import user_sessions_end
    from controlplane.models import Organisation

    user_sessions_end(organisation=Organisation.objects.get(pk=organisation_id), email=email)
