"""Who is signed in, and whether this session passed the second factor: one resolution for HTTP and websockets.

HTTP requests get their user from `AuthenticationMiddleware` (Django's, the user read through `get_user` below) and
then `OTPMiddleware` below; browser websockets (the live status feed) get theirs from `SessionUserMiddleware`, which
runs the same two steps on the websocket's session. Both end in `attach_second_factor`, a mirror of django-otp's own
OTPMiddleware (django_otp/middleware.py): the device whose persistent id the session holds counts only if it is
confirmed and belongs to the user, and `user.is_verified()` says so. `controlplane.access.resolve_org_access` then
applies the organisation's "require 2FA" rule to either kind of caller alike.

The user and the device are read on every signed-in request: through prepared queries (controlplane/prepared.py,
compiled once per process; issue 13), with what Django and django-otp decide around those reads unchanged (`get_user`
mirrors `django.contrib.auth.get_user` of Django 5.2, `device_from_persistent_id` django-otp's
`Device.from_persistent_id`; tests/controlplane/ui/test_signed_in_reads.py holds them to the same answers).
"""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from channels.db import database_sync_to_async
from django.apps import apps
from django.conf import settings
from django.contrib import auth
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.middleware import AuthenticationMiddleware as DjangoAuthenticationMiddleware
from django.contrib.auth.middleware import auser as django_auser
from django.contrib.auth.models import AnonymousUser
from django.utils.crypto import constant_time_compare
from django.utils.functional import SimpleLazyObject
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.models import Device

from controlplane.models import User
from controlplane.prepared import PreparedQuery

_MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
# The signed-in user by primary key, as ModelBackend.get_user reads it (the default manager's `get(pk=…)`).
_USER = PreparedQuery(lambda pk: User._default_manager.filter(pk=pk), pk=int)
# A device by its model and id, as Device.from_persistent_id reads it (`.filter(id=…).first()`): one query per device
# model (the installed ones: a bounded set), made on first use.
_DEVICE_QUERIES: dict[type[Device], PreparedQuery] = {}
_INT_RANGE = (-(2**31), 2**31)  # an id outside it is looked up by django-otp itself (the ORM's overflow rules)


def _backend_user(backend_path: str, user_id: Any) -> Any:
    """`load_backend(backend_path).get_user(user_id)`; Django's ModelBackend's read prepared."""
    backend = auth.load_backend(backend_path)
    if (
        backend_path != _MODEL_BACKEND
        or type(backend).get_user is not ModelBackend.get_user
        or auth.get_user_model() is not User
        or not isinstance(user_id, int)
    ):
        return backend.get_user(user_id)
    user = _USER.first(pk=user_id)
    return user if user is not None and backend.user_can_authenticate(user) else None


def get_user(request: Any) -> Any:
    """`django.contrib.auth.get_user(request)` (Django 5.2), the user read through `_backend_user`: the session's
    user if it still exists, may sign in and the session's hash matches its password (else the session is flushed:
    a password change signs other sessions out); a hash of a fallback secret key moves the session to a new key."""
    user = None
    try:
        user_id = auth._get_user_session_key(request)
        backend_path = request.session[BACKEND_SESSION_KEY]
    except KeyError:
        pass
    else:
        if backend_path in settings.AUTHENTICATION_BACKENDS:
            user = _backend_user(backend_path, user_id)
            if hasattr(user, "get_session_auth_hash"):
                session_hash = request.session.get(HASH_SESSION_KEY)
                if not session_hash:
                    session_hash_verified = False
                else:
                    session_auth_hash = user.get_session_auth_hash()
                    session_hash_verified = constant_time_compare(session_hash, session_auth_hash)
                if not session_hash_verified:
                    if session_hash and any(
                        constant_time_compare(session_hash, fallback_auth_hash)
                        for fallback_auth_hash in user.get_session_auth_fallback_hash()
                    ):
                        request.session.cycle_key()
                        request.session[HASH_SESSION_KEY] = session_auth_hash
                    else:
                        request.session.flush()
                        user = None
    return user or AnonymousUser()


def _cached_user(request: Any) -> Any:
    # As django.contrib.auth.middleware.get_user: once per request.
    if not hasattr(request, "_cached_user"):
        request._cached_user = get_user(request)
    return request._cached_user


class AuthenticationMiddleware(DjangoAuthenticationMiddleware):
    """Django's, with `request.user` from `get_user` above (the async `request.auser` stays Django's)."""

    def process_request(self, request: Any) -> None:
        if not hasattr(request, "session"):
            super().process_request(request)  # Django's error: the session middleware is missing
        request.user = SimpleLazyObject(lambda: _cached_user(request))
        request.auser = functools.partial(django_auser, request)


def device_from_persistent_id(persistent_id: str) -> Device | None:
    """`Device.from_persistent_id(persistent_id)` (django-otp), the device read prepared: None for an id that names
    no device model or no row."""
    try:
        model_label, device_id = persistent_id.rsplit("/", 1)
        app_label, model_name = model_label.split(".")
        device_cls = apps.get_model(app_label, model_name)
        pk = int(device_id)
    except (ValueError, LookupError):
        return None
    if not issubclass(device_cls, Device) or not _INT_RANGE[0] <= pk < _INT_RANGE[1]:
        return Device.from_persistent_id(persistent_id)
    query = _DEVICE_QUERIES.get(device_cls)
    if query is None:
        query = _DEVICE_QUERIES[device_cls] = PreparedQuery(
            lambda pk, model=device_cls: model.objects.filter(id=pk).order_by("pk"), pk=int
        )
    return query.first(pk=pk)


def _normalise_persistent_id(persistent_id: str) -> str:
    # As django-otp: ids written by old versions were full import paths ("app.models.Model/1").
    if persistent_id.count(".") > 1:
        parts = persistent_id.split(".")
        return ".".join((parts[-3], parts[-1]))
    return persistent_id


def _init_user_fields(user: Any) -> None:
    user.otp_device = None
    user.is_verified = functools.partial(_is_verified, user)


def _is_verified(user: Any) -> bool:
    return user.otp_device is not None


def _finalise_device(session: Any, user: Any, device: Device | None) -> Device | None:
    """A device counts only if it belongs to the user and is confirmed; a stale id leaves the session."""
    if device is not None and (device.user_id != user.pk or not device.confirmed):
        device = None
    if device is None and DEVICE_ID_SESSION_KEY in session:
        del session[DEVICE_ID_SESSION_KEY]
    return device


def attach_second_factor(user: Any, session: Any) -> Any:
    """`user` with `otp_device` (the device this session verified with, or None) and `is_verified()`."""
    _init_user_fields(user)
    if user.is_authenticated:
        persistent_id = session.get(DEVICE_ID_SESSION_KEY)
        device = device_from_persistent_id(_normalise_persistent_id(persistent_id)) if persistent_id else None
        user.otp_device = _finalise_device(session, user, device)
    return user


async def aattach_second_factor(user: Any, session: Any) -> Any:
    _init_user_fields(user)
    if user.is_authenticated:
        persistent_id = await sync_to_async(session.get)(DEVICE_ID_SESSION_KEY)
        device = await Device.afrom_persistent_id(_normalise_persistent_id(persistent_id)) if persistent_id else None
        user.otp_device = _finalise_device(session, user, device)
    return user


def user_for_session(session: Any) -> Any:
    """The user of `session` exactly as an HTTP request with that session sees it (AuthenticationMiddleware, then
    OTPMiddleware): AnonymousUser when signed out (or the password changed since), else the user with its
    second-factor state. Synchronous: it reads the database."""
    user = get_user(SimpleNamespace(session=session))
    return attach_second_factor(user, session)


class OTPMiddleware:
    """HTTP: after AuthenticationMiddleware, as django-otp's middleware (which it replaces) but through
    `attach_second_factor`, so that websockets and requests cannot disagree. Lazy, sync and async capable."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self._is_async = iscoroutinefunction(get_response)
        if self._is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self._is_async:
            return self.__acall__(request)
        self._install(request)
        return self.get_response(request)

    async def __acall__(self, request):
        self._install(request)
        return await self.get_response(request)

    @staticmethod
    def _install(request) -> None:
        user = getattr(request, "user", None)
        if user is not None:
            request.user = SimpleLazyObject(lambda: attach_second_factor(user, request.session))
        auser = getattr(request, "auser", None)
        if auser is not None:

            async def verified_auser():
                return await aattach_second_factor(await auser(), request.session)

            request.auser = verified_auser


class SessionUserMiddleware:
    """Websockets: `scope["user"]` from `scope["session"]` (channels' SessionMiddleware must run first) through
    `user_for_session`, the same resolution as an HTTP request. Replaces channels' AuthMiddleware, which knows
    nothing of the second factor."""

    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if "session" not in scope:
            raise ValueError("SessionUserMiddleware needs channels' SessionMiddleware in front of it")
        user = await database_sync_to_async(user_for_session)(scope["session"])
        return await self.inner({**scope, "user": user}, receive, send)
