"""The team domain's Access pages (`<team>.<AUTH_DOMAIN>/cdn-cgi/access/…`): the one-time PIN login, the JWKS,
get-identity and logout. Plain HTML forms that work without JavaScript. Business rules live in `access.login`."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from typing import Any
from urllib.parse import quote, urlsplit

import jwt
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from access import keys as access_keys
from access import login as flow
from access.logic.engine import Outcome
from access.models import AccessSettings, UserRevocation
from access.selectors import CompiledApp, CompiledOrg, compile_org
from access.services.directory import one_time_pin_provider
from access.services.settings import user_sessions_end
from controlplane.actors import client_ip as _client_ip
from controlplane.models import Organisation

COOKIE = "CF_Authorization"


def client_ip(request: HttpRequest) -> str:
    return _client_ip(request) or ""


def _organisation(request: HttpRequest) -> Organisation:
    organisation = flow.organisation_for_host(request.get_host())
    if organisation is None:
        raise Http404("No team with that name.")
    return organisation


def _country(request: HttpRequest) -> str:
    from django.conf import settings

    header = settings.ACCESS_COUNTRY_HEADER
    if not header or not getattr(settings, "TRUSTED_PROXY_COUNT", 0):
        return ""
    value = request.META.get("HTTP_" + header.upper().replace("-", "_"), "")
    return value.upper()[:2] if len(value) == 2 and value.isalpha() else ""


def global_session_seconds(organisation: Organisation) -> int:
    from access.logic.durations import parse_go_duration

    row = AccessSettings.objects.for_org(organisation).first()
    return int(parse_go_duration(row.session_duration if row else "24h").total_seconds())


def org_session(request: HttpRequest, organisation: Organisation) -> dict[str, Any] | None:
    """The claims of the visitor's valid global session cookie, or None."""
    token = request.COOKIES.get(COOKIE)
    if not token or len(token) > 8192:
        return None
    try:
        claims = access_keys.verify(
            token,
            access_keys.public_keys(access_keys.verifying_keys(organisation)),
            audience=access_keys.org_audience(organisation.pk),
            issuer_url=access_keys.issuer(organisation),
        )
    except jwt.InvalidTokenError:
        return None
    if claims.get("type") != "org" or not isinstance(claims.get("email"), str):
        return None
    revoked = UserRevocation.objects.for_org(organisation).filter(email=claims["email"]).first()
    if revoked is not None and claims["iat"] <= int(revoked.revoked_at.timestamp()):
        return None
    return claims


def _target(app_host: str, raw: str | None, compiled: CompiledOrg, app: CompiledApp) -> str:
    """Where to send the visitor after login: the URL they first asked for, only if it is on this application."""
    default = f"https://{app_host}/"
    if not raw or len(raw) > 4096:
        return default
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return default
    if compiled.match(parts.hostname, parts.path or "/") is not app:
        return default
    return raw


_COLOUR = re.compile(r"^#[0-9a-fA-F]{3}(?:[0-9a-fA-F]{3})?$")


def design_css(design: dict[str, Any]) -> str:
    """The organisation's login page colours as CSS custom properties (the values are checked `#rgb`/`#rrggbb`
    colours, access.services.settings), served inline and allowed by their hash in the page's CSP."""
    properties = [
        f"--{name}:{design[key]}"
        for key, name in (("background_color", "page"), ("text_color", "page-ink"))
        if isinstance(design.get(key), str) and _COLOUR.match(design[key])
    ]
    return ":root{" + ";".join(properties) + "}" if properties else ""


def _context(request: HttpRequest, organisation: Organisation, app: CompiledApp, **extra: Any) -> dict[str, Any]:
    row = AccessSettings.objects.for_org(organisation).first()
    design = row.login_design if row else {}
    logo_url = app.app.logo_url or design.get("logo_path", "")
    css = design_css(design)
    request.access_page = (css, logo_url)  # type: ignore[attr-defined]  # for the page's CSP (login())
    return {
        "team": organisation.display_name or organisation.team_name,
        "app": app,
        "logo_url": logo_url,
        "design": design,
        "design_css": css,
        **extra,
    }


def _denied(request: HttpRequest, organisation: Organisation, app: CompiledApp, email: str) -> HttpResponse:
    if app.app.custom_deny_url:
        return HttpResponseRedirect(app.app.custom_deny_url)
    decision_id = uuid.uuid4().hex[:16]
    context = _context(
        request, organisation, app, email=email, decision_id=decision_id, message=app.app.custom_deny_message
    )
    return render(request, "access/denied.html", context, status=403)


def _admit(
    request: HttpRequest,
    organisation: Organisation,
    app: CompiledApp,
    target: str,
    *,
    email: str,
    seconds: int,
    login_method: str,
    country: str,
    new_session: bool,
) -> HttpResponse:
    code = flow.handoff_create(
        organisation=organisation, app=app, email=email, login_method=login_method, country=country, seconds=seconds
    )
    parts = urlsplit(target)
    authorized = (
        f"{parts.scheme}://{parts.netloc}/cdn-cgi/access/authorized?code={code}&redirect_url={quote(target, safe='')}"
    )
    response = HttpResponseRedirect(authorized)
    if new_session:
        lifetime = global_session_seconds(organisation)
        claims = access_keys.identity_claims(
            organisation,
            kind="org",
            audience=[access_keys.org_audience(organisation.pk)],
            email=email,
            seconds=lifetime,
            country=country,
        )
        secure = request.is_secure()
        response.set_cookie(
            COOKIE,
            access_keys.sign(organisation, claims),
            max_age=lifetime,
            secure=secure,
            httponly=True,
            samesite="None" if secure else "Lax",
        )
    return response


def _decide(request: HttpRequest, organisation: Organisation, compiled: CompiledOrg, app: CompiledApp, email: str):
    idp = one_time_pin_provider(organisation)
    subject = flow.subject_for(
        compiled, email=email, ip=client_ip(request), country=_country(request), login_method=str(idp.pk)
    )
    from access.logic.engine import evaluate

    return evaluate(list(app.policies), subject, compiled.directory), str(idp.pk)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else ""


def _page_policy(response: HttpResponse, target: str, css: str, logo_url: str) -> HttpResponse:
    """The login page's CSP: the forms' POST answers with a redirect to the application's own host (the handoff), so
    that one origin is a form target besides this one (Chromium applies form-action to the redirect); the
    organisation's colours are one inline style, allowed by its hash; its logo may come from its own origin."""
    from controlplane.security_headers import CSP_HEADER, UI_POLICY

    policy = UI_POLICY
    if target and _origin(target):
        policy = policy.replace("form-action 'self'", f"form-action 'self' {_origin(target)}")
    if css:
        digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
        policy = policy.replace("style-src 'self'", f"style-src 'self' 'sha256-{digest}'")
    if logo_url and _origin(logo_url):
        policy = policy.replace("img-src 'self' data:", f"img-src 'self' data: {_origin(logo_url)}")
    if policy != UI_POLICY:
        response.headers[CSP_HEADER] = policy
    return response


@never_cache
@require_http_methods(["GET", "POST"])
def login(request: HttpRequest, app_host: str) -> HttpResponse:
    response = _login(request, app_host)
    css, logo_url = getattr(request, "access_page", ("", ""))
    return _page_policy(response, getattr(request, "access_form_target", ""), css, logo_url)


def _login(request: HttpRequest, app_host: str) -> HttpResponse:
    organisation = _organisation(request)
    app_host = app_host.lower().rstrip(".")
    compiled = compile_org(organisation)
    raw_target = request.GET.get("redirect_url") or request.POST.get("redirect_url")
    path = urlsplit(raw_target).path if raw_target else "/"
    app = compiled.match(app_host, path or "/")
    if app is None:
        raise Http404("No Access application covers that address.")
    target = _target(app_host, raw_target, compiled, app)
    request.access_form_target = target  # type: ignore[attr-defined]
    ip, country = client_ip(request), _country(request)
    form = {"redirect_url": target, "app_host": app_host}

    if request.method == "GET":
        claims = org_session(request, organisation)
        if claims is not None:  # signed in to the team already: single sign-on to this application
            verdict, idp = _decide(request, organisation, compiled, app, claims["email"])
            allowed = verdict.outcome is Outcome.ALLOW
            flow.log_request(
                organisation=organisation,
                app=app,
                email=claims["email"],
                ip=ip,
                allowed=allowed,
                reason=verdict.explain(),
                action="sso",
                country=country,
            )
            if not allowed:
                return _denied(request, organisation, app, claims["email"])
            return _admit(
                request,
                organisation,
                app,
                target,
                email=claims["email"],
                seconds=flow.session_seconds(app, verdict),
                login_method=idp,
                country=country,
                new_session=False,
            )
        return render(request, "access/login.html", _context(request, organisation, app, step="email", form=form))

    email = (request.POST.get("email") or "").strip()
    if not email or "@" not in email or len(email) > 254:
        return render(
            request,
            "access/login.html",
            _context(request, organisation, app, step="email", form=form, error="Enter your email address."),
            status=400,
        )
    form["email"] = email
    if "code" not in request.POST:
        try:
            flow.request_code(
                organisation=organisation, compiled=compiled, app=app, email=email, ip=ip, country=country
            )
        except flow.Throttled:
            return render(
                request,
                "access/login.html",
                _context(
                    request,
                    organisation,
                    app,
                    step="email",
                    form=form,
                    error="Too many codes were asked for. Wait a few minutes, then try again.",
                ),
                status=429,
            )
        return render(request, "access/login.html", _context(request, organisation, app, step="code", form=form))

    check = flow.check_pin(organisation=organisation, app=app, email=email, pin=request.POST.get("code") or "")
    if not check.ok:
        flow.log_request(
            organisation=organisation, app=app, email=email, ip=ip, allowed=False, reason=check.message, country=country
        )
        return render(
            request,
            "access/login.html",
            _context(request, organisation, app, step="code", form=form, error=check.message),
            status=400,
        )
    verdict, idp = _decide(request, organisation, compiled, app, email)
    allowed = verdict.outcome is Outcome.ALLOW
    flow.log_request(
        organisation=organisation,
        app=app,
        email=email.lower(),
        ip=ip,
        allowed=allowed,
        reason=verdict.explain(),
        country=country,
    )
    if not allowed:
        return _denied(request, organisation, app, email)
    return _admit(
        request,
        organisation,
        app,
        target,
        email=email.lower(),
        seconds=flow.session_seconds(app, verdict),
        login_method=idp,
        country=country,
        new_session=True,
    )


@require_GET
def certs(request: HttpRequest) -> JsonResponse:
    organisation = _organisation(request)
    response = JsonResponse(access_keys.jwks(organisation))
    response["Cache-Control"] = "public, max-age=60"
    return response


@never_cache
@require_GET
def get_identity(request: HttpRequest) -> JsonResponse:
    organisation = _organisation(request)
    claims = org_session(request, organisation)
    if claims is None:
        return JsonResponse({"err": "no valid session"}, status=401)
    idp = one_time_pin_provider(organisation)
    return JsonResponse(
        {
            "email": claims["email"],
            "idp": {"id": str(idp.pk), "type": idp.type},
            "user_uuid": claims["sub"],
            "account_id": organisation.account_id,
            "iat": claims["iat"],
            "ip": client_ip(request),
            "geo": {"country": claims.get("country", "")},
            "identity_nonce": claims.get("identity_nonce", ""),
        }
    )


@never_cache
@require_http_methods(["GET", "POST"])
def logout(request: HttpRequest) -> HttpResponse:
    """Ends the visitor's session on every application of the team (their tokens issued until now are refused)."""
    organisation = _organisation(request)
    claims = org_session(request, organisation)
    if claims is not None:
        user_sessions_end(organisation=organisation, email=claims["email"])
    response = render(request, "access/logged_out.html", {"team": organisation.display_name or organisation.team_name})
    response.delete_cookie(COOKIE)
    return response
