"""Who is signed in, and whether this session passed the second factor: one resolution for HTTP and websockets.

HTTP requests get their user from Django's AuthenticationMiddleware and then `OTPMiddleware` below; browser
websockets (the live status feed) get theirs from `SessionUserMiddleware`, which runs the same two steps on the
websocket's session. Both end in `attach_second_factor`, a mirror of django-otp's own OTPMiddleware (django_otp/
middleware.py): the device whose persistent id the session holds counts only if it is confirmed and belongs to the
user, and `user.is_verified()` says so. `controlplane.access.resolve_org_access` then applies the organisation's
"require 2FA" rule to either kind of caller alike.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from channels.db import database_sync_to_async
from django.contrib import auth
from django.utils.functional import SimpleLazyObject
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.models import Device


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
        device = Device.from_persistent_id(_normalise_persistent_id(persistent_id)) if persistent_id else None
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
    user = auth.get_user(SimpleNamespace(session=session))  # type: ignore[arg-type]
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
