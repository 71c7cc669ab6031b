"""The one-time PIN login, from the email to the application's cookie.

1. The team domain's login page takes an email. It always answers "a code has been emailed to you"; a PIN is sent
   only when an Allow policy of the application could admit that email (no enumeration of who has access).
2. The PIN: 6 digits, 10 minutes, single use, stored as an HMAC, compared in constant time, void after 5 wrong
   tries; requests are throttled per email and per client address.
3. A valid PIN is checked against the policies once more with the full identity, then gives the global session
   (the team domain's `CF_Authorization`, type `org`) and a single-use handoff code that the edge exchanges, on the
   application's own host, for the application's `CF_Authorization` (type `app`).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from access.logic.engine import Outcome, Verdict, evaluate
from access.logic.rules import Subject
from access.models import AccessRequest, Application, HandoffCode, LoginCode
from access.selectors import CompiledApp, CompiledOrg
from access.services.directory import one_time_pin_provider
from controlplane.models import Organisation

logger = logging.getLogger(__name__)

PIN_LIFETIME = datetime.timedelta(minutes=10)
PIN_MAX_ATTEMPTS = 5
HANDOFF_LIFETIME = datetime.timedelta(seconds=60)
CODES_PER_EMAIL = 5  # per THROTTLE_WINDOW
CODES_PER_IP = 20
THROTTLE_WINDOW = 600


def organisation_for_host(host: str) -> Organisation | None:
    """The organisation whose team domain `host` is (`<team>.<AUTH_DOMAIN>`), or None."""
    suffix = "." + settings.AUTH_DOMAIN
    host = host.split(":", 1)[0].rstrip(".").lower()
    if not host.endswith(suffix):
        return None
    team = host[: -len(suffix)]
    if not team or "." in team:
        return None
    return Organisation.objects.filter(team_name=team).first()


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def subject_for(org: CompiledOrg, *, email: str | None, ip: str, country: str, login_method: str = "") -> Subject:
    return Subject(
        email=email.lower() if email else None,
        login_method=login_method or None,
        ip=_ip(ip),
        country=country or None,
    )


def _pin_hash(code_id: Any, pin: str) -> str:
    return hmac.new(settings.SECRET_KEY.encode(), f"access-pin:{code_id}:{pin}".encode(), hashlib.sha256).hexdigest()


def _throttled(key: str, limit: int) -> bool:
    full = f"access-throttle:{key}"
    added = cache.add(full, 1, THROTTLE_WINDOW)
    if added:
        return False
    try:
        count = cache.incr(full)
    except ValueError:
        cache.set(full, 1, THROTTLE_WINDOW)
        return False
    return count > limit


class Throttled(Exception):
    """Too many codes asked for this email or from this address."""


def request_code(
    *, organisation: Organisation, compiled: CompiledOrg, app: CompiledApp, email: str, ip: str, country: str
) -> bool:
    """Send a PIN when an Allow policy could admit `email`. Returns whether one was sent (the caller must not tell
    the visitor). Raises Throttled past the per-email or per-address limits."""
    email = email.strip().lower()
    if _throttled(f"ip:{ip}", CODES_PER_IP) or _throttled(f"email:{organisation.pk}:{email}", CODES_PER_EMAIL):
        raise Throttled
    idp = one_time_pin_provider(organisation)
    verdict = evaluate(
        list(app.policies),
        subject_for(compiled, email=email, ip=ip, country=country, login_method=str(idp.pk)),
        compiled.directory,
    )
    if verdict.outcome is not Outcome.ALLOW:
        return False
    pin = f"{secrets.randbelow(10**6):06d}"
    with transaction.atomic():
        code = LoginCode(
            organisation=organisation,
            application_id=app.id,
            email=email,
            expires_at=timezone.now() + PIN_LIFETIME,
            pin_hash="",
        )
        code.pin_hash = _pin_hash(code.id, pin)
        code.save()
        from access.tasks import send_login_code

        transaction.on_commit(
            lambda: send_login_code.delay(code_id=str(code.id), organisation_id=str(organisation.pk), pin=pin)
        )
    return True


@dataclass(frozen=True)
class PinCheck:
    ok: bool
    message: str = ""


def check_pin(*, organisation: Organisation, app: CompiledApp, email: str, pin: str) -> PinCheck:
    """Consume the PIN if it is right. Wrong tries count against the newest live code; the fifth voids it."""
    email = email.strip().lower()
    pin = "".join(ch for ch in pin if ch.isdigit())
    now = timezone.now()
    with transaction.atomic():
        code = (
            LoginCode.objects.for_org(organisation)
            .select_for_update()
            .filter(email=email, application_id=app.id)
            .order_by("-created_at")
            .first()
        )
        if code is None or code.expires_at <= now:
            return PinCheck(False, "That code has expired or was never sent. Request a new code.")
        if code.used_at is not None:
            return PinCheck(False, "This one-time PIN has already been used. Request a new code.")
        if code.attempts >= PIN_MAX_ATTEMPTS:
            return PinCheck(False, "Too many wrong codes: this one is void. Request a new code.")
        if len(pin) != 6 or not hmac.compare_digest(code.pin_hash, _pin_hash(code.id, pin)):
            code.attempts += 1
            code.save(update_fields=["attempts"])
            left = PIN_MAX_ATTEMPTS - code.attempts
            if left <= 0:
                return PinCheck(False, "Too many wrong codes: this one is void. Request a new code.")
            return PinCheck(False, f"That code is not right. Check the newest email ({left} tries left).")
        updated = LoginCode.objects.for_org(organisation).filter(pk=code.pk, used_at__isnull=True).update(used_at=now)
        if not updated:
            return PinCheck(False, "This one-time PIN has already been used. Request a new code.")
    return PinCheck(True)


def session_seconds(app: CompiledApp, verdict: Verdict) -> int:
    if verdict.policy is not None and verdict.policy.session_duration is not None:
        return int(verdict.policy.session_duration.total_seconds())
    return app.session_duration_seconds


def handoff_create(
    *, organisation: Organisation, app: CompiledApp, email: str, login_method: str, country: str, seconds: int
) -> str:
    raw = secrets.token_urlsafe(32)
    HandoffCode.objects.create(
        organisation=organisation,
        application_id=app.id,
        code_hash=hashlib.sha256(raw.encode()).hexdigest(),
        email=email,
        login_method=login_method,
        country=country[:2],
        session_seconds=max(0, seconds),
        expires_at=timezone.now() + HANDOFF_LIFETIME,
    )
    return raw


def handoff_redeem(raw: str) -> HandoffCode | None:
    """The code's row, consumed, if it is live; None otherwise (sync: the edge runs it in a database thread)."""
    if not raw or len(raw) > 128:
        return None
    digest = hashlib.sha256(raw.encode()).hexdigest()
    rows = HandoffCode.objects.unscoped("a handoff code is its own authority (a 256-bit secret)")
    code = rows.select_related("organisation").filter(code_hash=digest).first()
    if code is None or code.used_at is not None or code.expires_at <= timezone.now():
        return None
    if not rows.filter(pk=code.pk, used_at__isnull=True).update(used_at=timezone.now()):
        return None
    return code


def log_request(
    *,
    organisation: Organisation,
    app: CompiledApp | Application | None,
    email: str,
    ip: str,
    allowed: bool,
    reason: str,
    action: str = "login",
    ray_id: str = "",
    country: str = "",
) -> None:
    AccessRequest.objects.create(
        organisation=organisation,
        user_email=email[:320],
        ip_address=ip[:64],
        app_uid=str(app.id) if app else "",
        app_domain=(app.destinations[0].uri if isinstance(app, CompiledApp) and app.destinations else "")
        if app
        else "",
        action=action,
        allowed=allowed,
        reason=reason[:300],
        ray_id=ray_id[:32],
        country=country[:2],
    )


# An edge refusal (a 403 with its decision id) is logged once per visitor, application and minute: a client retrying
# a refused request must not fill the log. Bounded: cleared past 10,000 remembered visitors.
DENIAL_LOG_SECONDS = 60.0
_logged_denials: dict[tuple[str, str, str, str], float] = {}


def denial_worth_logging(organisation_id: Any, app_id: str, email: str, ip: str) -> bool:
    now = time.monotonic()
    key = (str(organisation_id), app_id, email, ip)
    last = _logged_denials.get(key)
    if last is not None and now - last < DENIAL_LOG_SECONDS:
        return False
    if len(_logged_denials) >= 10_000:
        _logged_denials.clear()
    _logged_denials[key] = now
    return True


def log_denial(
    organisation_id: Any, app: CompiledApp, email: str, ip: str, country: str | None, reason: str, ray_id: str
) -> None:
    """The edge refused a request (sync: the edge runs it in a database thread). Bypass and admitted requests are
    not logged, as in Cloudflare; logins are (log_request)."""
    organisation = Organisation.objects.get(pk=organisation_id)
    log_request(
        organisation=organisation,
        app=app,
        email=email,
        ip=ip,
        allowed=False,
        reason=reason or "no policy admits the request",
        action="request",
        ray_id=ray_id,
        country=country or "",
    )
