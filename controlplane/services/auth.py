"""Signing in to the UI: the password check with per-account lockout and per-address throttling, the second
factor (TOTP and static backup codes, django-otp), and the `login` audit event.

Failures never say whether an email address has an account: an unknown address gets the same message as a
wrong password, and it is locked out on the same schedule (kept in the cache instead of on a user row), so a
"locked" answer does not reveal an account either.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import check_password, is_password_usable, make_password
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from controlplane.actors import Actor
from controlplane.choices import AuditAction
from controlplane.models import Membership, Organisation, User
from controlplane.services.audit import audit_event, audit_records

INVALID_CREDENTIALS = "The email address or password is incorrect."
TOTP_DEVICE_NAME = "Authenticator app"
BACKUP_DEVICE_NAME = "Backup codes"
_UNKNOWN_EMAIL_STATE_TTL = 60 * 60 * 24


class SignInError(Exception):
    """A refused sign-in step; `message` is safe to show to the person signing in."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidCredentials(SignInError):
    def __init__(self) -> None:
        super().__init__(INVALID_CREDENTIALS)


class AccountLocked(SignInError):
    def __init__(self, until: datetime.datetime) -> None:
        self.until = until
        super().__init__(
            f"This account is locked after too many failed sign-in attempts, until {until:%H:%M:%S} UTC on "
            f"{until:%d %B %Y}. Try again then, or reset your password."
        )


class TooManyAttempts(SignInError):
    def __init__(self) -> None:
        minutes = max(1, settings.LOGIN_LOCKOUT_SECONDS // 60)
        super().__init__(f"Too many failed sign-in attempts from your network. Try again in {minutes} minutes.")


class SecondFactorInvalid(SignInError):
    """A wrong code. Backup codes are suggested only where they are accepted and the user has one left: never
    while setting up the authenticator (none exist yet)."""

    def __init__(self, *, backup_codes_accepted: bool = False) -> None:
        if backup_codes_accepted:
            hint = "Enter the current code from your app, or an unused backup code."
        else:
            hint = "Enter the 6-digit code your app shows now (if it keeps failing, check your phone's clock)."
        super().__init__(f"That code is not valid. {hint}")


class SecondFactorThrottled(SignInError):
    def __init__(self, until: datetime.datetime | None) -> None:
        self.until = until
        wait = max(1, int((until - timezone.now()).total_seconds()) + 1) if until else 1
        super().__init__(f"Too many wrong codes. Wait {wait} seconds before trying again.")


# --- throttling -------------------------------------------------------------------------------------------------


def _ip_key(ip: str | None) -> str:
    return f"signin:ip-failures:{ip or 'unknown'}"


def _ip_is_throttled(ip: str | None) -> bool:
    return int(cache.get(_ip_key(ip), 0)) >= settings.LOGIN_IP_MAX_FAILURES


def _count_ip_failure(ip: str | None) -> None:
    key = _ip_key(ip)
    if cache.add(key, 1, timeout=settings.LOGIN_LOCKOUT_SECONDS):
        return
    try:
        cache.incr(key)
    except ValueError:  # expired between add() and incr()
        cache.set(key, 1, timeout=settings.LOGIN_LOCKOUT_SECONDS)


def _lockout_duration(lockouts: int) -> datetime.timedelta:
    """The first lockout lasts LOGIN_LOCKOUT_SECONDS; each further one twice as long as the previous."""
    return datetime.timedelta(seconds=settings.LOGIN_LOCKOUT_SECONDS * 2 ** max(0, lockouts - 1))


def _register_user_failure(user: User) -> datetime.datetime | None:
    """Count a failed attempt on the account; returns the lock's end when this failure locks it."""
    with transaction.atomic():
        row = User.objects.select_for_update().get(pk=user.pk)
        row.failed_logins += 1
        locks = row.failed_logins >= settings.LOGIN_MAX_FAILURES
        if locks:
            row.failed_logins = 0
            row.lockouts += 1
            row.locked_until = timezone.now() + _lockout_duration(row.lockouts)
        row.save(update_fields=["failed_logins", "lockouts", "locked_until"])
    user.failed_logins, user.lockouts, user.locked_until = row.failed_logins, row.lockouts, row.locked_until
    return row.locked_until if locks else None


def _unknown_email_key(email: str) -> str:
    return "signin:unknown-email:" + hashlib.sha256(email.encode()).hexdigest()


def _unknown_email_failure(email: str) -> SignInError:
    """Lock unknown addresses like real accounts, so that the lockout does not reveal which ones exist."""
    key = _unknown_email_key(email)
    state = cache.get(key) or {"failed": 0, "lockouts": 0, "locked_until": None}
    now = timezone.now()
    if state["locked_until"] and state["locked_until"] > now:
        return AccountLocked(state["locked_until"])
    state["failed"] += 1
    locked = state["failed"] >= settings.LOGIN_MAX_FAILURES
    if locked:
        state["failed"] = 0
        state["lockouts"] += 1
        state["locked_until"] = now + _lockout_duration(state["lockouts"])
    ttl = max(_UNKNOWN_EMAIL_STATE_TTL, int(_lockout_duration(state["lockouts"]).total_seconds()))
    cache.set(key, state, timeout=ttl)
    return AccountLocked(state["locked_until"]) if locked else InvalidCredentials()


def _check_not_locked(user: User) -> None:
    if user.locked_until is not None and user.locked_until > timezone.now():
        raise AccountLocked(user.locked_until)


@functools.lru_cache(maxsize=4)
def _dummy_password_hash(hashers: tuple[str, ...]) -> str:
    """A hash by the current default hasher of a password nobody knows, for sign-ins with no real hash to check
    (keyed by the hasher setting, so that a changed setting gets a hash of the same cost)."""
    return make_password(secrets.token_urlsafe(24))


def _check_password_once(user: User | None, password: str) -> bool:
    """Run the password hasher exactly once whoever signs in: against the account's hash, or against a dummy one
    when there is no account or no usable password. The hasher is what makes a sign-in slow (hundreds of
    milliseconds by design); skipping it for some paths told which emails have accounts (issue 14, item 8)."""
    if user is not None and is_password_usable(user.password):

        def upgrade(raw: str) -> None:  # Django's own rehash when the hasher's parameters changed
            user.set_password(raw)
            user.save(update_fields=["password"])

        return check_password(password, user.password, upgrade)
    check_password(password, _dummy_password_hash(tuple(settings.PASSWORD_HASHERS)))
    return False


def _mirror_account_state(email: str, user: User) -> None:
    """The same cache read and write as an unknown address's failure (its lockout state lives in the cache), so
    that a failure on a real account costs the same cache round trips."""
    key = _unknown_email_key(email)
    cache.get(key)
    state = {"failed": user.failed_logins, "lockouts": user.lockouts, "locked_until": user.locked_until}
    cache.set(key, state, timeout=_UNKNOWN_EMAIL_STATE_TTL)


# --- sign-in steps ----------------------------------------------------------------------------------------------


def sign_in_password(*, email: str, password: str, ip: str | None) -> User:
    """The user whose email and password these are, or a SignInError saying (generically) why not.

    Every path does the same work: one run of the password hasher (`_check_password_once`), the address throttle's
    cache operations, and one read and one write of the per-address state in the cache; so neither the answer nor
    its timing says whether an account exists or is locked. A locked account is refused whatever the password."""
    email = (email or "").strip().lower()
    if _ip_is_throttled(ip):
        raise TooManyAttempts()
    user = User.objects.filter(email__iexact=email).first() if email else None
    correct = _check_password_once(user, password or "")
    if user is None:
        _count_ip_failure(ip)
        raise _unknown_email_failure(email)
    try:
        _check_not_locked(user)
    except AccountLocked:
        _count_ip_failure(ip)
        _mirror_account_state(email, user)
        raise
    if not (correct and user.is_active):
        _count_ip_failure(ip)
        until = _register_user_failure(user)
        _mirror_account_state(email, user)
        if until is not None:
            raise AccountLocked(until)
        raise InvalidCredentials()
    return user


def user_has_second_factor(user: User) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def _normalise_code(code: str) -> str:
    return "".join((code or "").split()).replace("-", "").lower()


def _candidate_devices(user: User, code: str) -> list[Device]:
    """Digits can be an authenticator code; backup codes are eight characters."""
    devices: list[Device] = []
    if code.isdigit() and len(code) in (6, 8):
        devices += TOTPDevice.objects.select_for_update().filter(user=user, confirmed=True)
    if len(code) != 6:
        devices += StaticDevice.objects.select_for_update().filter(user=user, confirmed=True)
    return devices


def _verify_code(user: User, code: str) -> Device:
    """The device that accepts `code` (consuming it), or SecondFactorThrottled / SecondFactorInvalid."""
    code = _normalise_code(code)
    with transaction.atomic():
        devices = _candidate_devices(user, code) if code else []
        throttled_until: list[datetime.datetime | None] = []
        for device in devices:
            allowed, info = device.verify_is_allowed()
            if not allowed:
                throttled_until.append((info or {}).get("locked_until"))
                continue
            if device.verify_token(code):
                return device
        if devices and len(throttled_until) == len(devices):
            raise SecondFactorThrottled(min((t for t in throttled_until if t), default=None))
    raise SecondFactorInvalid(backup_codes_accepted=_has_backup_codes_left(user))


def _has_backup_codes_left(user: User) -> bool:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).exists()


def sign_in_second_factor(*, user: User, code: str, ip: str | None) -> Device:
    """Check the second factor of a user whose password was right. Wrong codes count as failed sign-ins."""
    if _ip_is_throttled(ip):
        raise TooManyAttempts()
    user.refresh_from_db(fields=["locked_until", "failed_logins", "lockouts"])
    _check_not_locked(user)
    try:
        return _verify_code(user, code)
    except SecondFactorInvalid:
        _count_ip_failure(ip)
        until = _register_user_failure(user)
        if until is not None:
            raise AccountLocked(until) from None
        raise


def _audit_in_users_organisations(*, user: User, actor: Actor, action: str, changes: dict[str, Any]) -> None:
    """One event per organisation of the user, in one query for the memberships and one insert."""
    organisation_ids = list(
        Membership.objects.filter(user=user)
        .unscoped("the user's own memberships")
        .values_list("organisation_id", flat=True)
    )
    as_user = dataclasses.replace(actor, user=user, token=None)
    audit_records(
        audit_event(
            organisation_id=organisation_id,
            actor=as_user,
            action=action,
            resource_type="user",
            resource_id=str(user.pk),
            resource_name=user.email,
            changes=changes,
        )
        for organisation_id in organisation_ids
    )


@transaction.atomic
def sign_in_complete(*, user: User, actor: Actor, method: str) -> None:
    """Both factors passed: clear the failure counters and record a `login` event in each of the user's
    organisations. `method` says how ("password", "password+totp", "password+backup code")."""
    if user.failed_logins or user.lockouts or user.locked_until:
        User.objects.filter(pk=user.pk).update(failed_logins=0, lockouts=0, locked_until=None)
        user.failed_logins, user.lockouts, user.locked_until = 0, 0, None
    _audit_in_users_organisations(user=user, actor=actor, action=AuditAction.LOGIN, changes={"method": method})


def sign_in_unlock(*, user: User) -> None:
    """A password reset proves control of the mailbox: the account's lock and failure count are cleared."""
    User.objects.filter(pk=user.pk).update(failed_logins=0, lockouts=0, locked_until=None)


def second_factor_method(device: Device) -> str:
    return "password+backup code" if isinstance(device, StaticDevice) else "password+totp"


# --- two-factor enrolment ---------------------------------------------------------------------------------------


def organisations_requiring_2fa(user: User) -> list[Organisation]:
    memberships = (
        Membership.objects.filter(user=user, organisation__require_2fa=True)
        .unscoped("the user's own memberships")
        .select_related("organisation")
    )
    return [membership.organisation for membership in memberships]


def user_must_use_2fa(user: User) -> bool:
    return (
        Membership.objects.filter(user=user, organisation__require_2fa=True)
        .unscoped("the user's own memberships")
        .exists()
    )


@dataclass(frozen=True)
class TwoFactorStatus:
    enabled: bool
    backup_codes_left: int
    confirmed_at: datetime.datetime | None


def two_factor_status(user: User) -> TwoFactorStatus:
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    left = StaticToken.objects.filter(device__user=user, device__confirmed=True).count() if device else 0
    return TwoFactorStatus(
        enabled=device is not None, backup_codes_left=left, confirmed_at=getattr(device, "created_at", None)
    )


def totp_enrolment_device(*, user: User) -> TOTPDevice:
    """The unconfirmed authenticator being set up: kept across page loads so the QR code stays the same."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-id").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)
    return device


def _new_backup_codes(user: User) -> list[str]:
    device, _ = StaticDevice.objects.get_or_create(user=user, name=BACKUP_DEVICE_NAME, defaults={"confirmed": True})
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(settings.BACKUP_CODE_COUNT)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
    if not device.confirmed:
        device.confirmed = True
        device.save(update_fields=["confirmed"])
    return codes


def totp_confirm(*, user: User, device: TOTPDevice, code: str, actor: Actor) -> list[str]:
    """Turn 2FA on once the app shows a valid code for `device`; returns fresh backup codes (shown once)."""
    if device.user_id != user.pk or device.confirmed:
        raise SecondFactorInvalid()
    # The check commits on its own, so that a wrong code's throttling is kept.
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().get(pk=device.pk)
        allowed, info = device.verify_is_allowed()
        if not allowed:
            raise SecondFactorThrottled((info or {}).get("locked_until"))
        verified = device.verify_token(_normalise_code(code))
    if not verified:
        raise SecondFactorInvalid()
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        codes = _new_backup_codes(user)
        _audit_in_users_organisations(
            user=user, actor=actor, action=AuditAction.UPDATE, changes={"two_factor": [False, True]}
        )
    return codes


@transaction.atomic
def backup_codes_regenerate(*, user: User, actor: Actor) -> list[str]:
    """Replace every backup code; the old ones stop working."""
    if not user_has_second_factor(user):
        raise PermissionDenied("Turn on two-factor authentication first.")
    codes = _new_backup_codes(user)
    _audit_in_users_organisations(
        user=user, actor=actor, action=AuditAction.ROTATE, changes={"backup_codes": ["replaced", "new"]}
    )
    return codes


def two_factor_disable(*, user: User, code: str, actor: Actor) -> None:
    """Remove the authenticator and backup codes; needs a current code and no organisation requiring 2FA."""
    requiring = organisations_requiring_2fa(user)
    if requiring:
        names = ", ".join(str(organisation) for organisation in requiring)
        raise PermissionDenied(f"Two-factor authentication cannot be turned off: {names} requires it of every member.")
    _verify_code(user, code)  # commits on its own, so that a wrong code's throttling is kept
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        StaticDevice.objects.filter(user=user).delete()
        _audit_in_users_organisations(
            user=user, actor=actor, action=AuditAction.UPDATE, changes={"two_factor": [True, False]}
        )


PASSWORD_RESET_PER_IP_PER_HOUR = 10


def password_reset_allowed(ip: str | None) -> bool:
    """At most PASSWORD_RESET_PER_IP_PER_HOUR reset requests per client address an hour (each sends a mail)."""
    key = f"password-reset-ip:{ip or 'unknown'}"
    if cache.add(key, 1, timeout=3600):
        return True
    try:
        count = cache.incr(key)
    except ValueError:
        cache.set(key, 1, timeout=3600)
        return True
    return count <= PASSWORD_RESET_PER_IP_PER_HOUR
