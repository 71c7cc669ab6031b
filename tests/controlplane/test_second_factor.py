"""controlplane.second_factor: the one resolution of "signed in, and passed the second factor" for HTTP requests
and websockets, mirroring django-otp's OTPMiddleware."""

from __future__ import annotations

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from controlplane.second_factor import user_for_session
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db]


def session_of(user, device=None) -> SessionStore:
    client = Client()
    client.force_login(user)
    session = SessionStore(client.session.session_key)
    if device is not None:
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()
    return SessionStore(session.session_key)


def test_a_confirmed_device_of_the_user_verifies_the_session():
    user = UserFactory()
    device = TOTPDevice.objects.create(user=user, name="app", confirmed=True)
    resolved = user_for_session(session_of(user, device))
    assert resolved.pk == user.pk and resolved.is_verified() and resolved.otp_device == device


def test_password_only_session_is_signed_in_but_not_verified():
    user = UserFactory()
    TOTPDevice.objects.create(user=user, name="app", confirmed=True)
    resolved = user_for_session(session_of(user))
    assert resolved.is_authenticated and not resolved.is_verified()


@pytest.mark.parametrize("whose", ["unconfirmed", "another user's"])
def test_a_device_that_does_not_count_is_dropped_from_the_session(whose):
    user = UserFactory()
    owner = user if whose == "unconfirmed" else UserFactory()
    device = TOTPDevice.objects.create(user=owner, name="app", confirmed=whose != "unconfirmed")
    session = session_of(user, device)
    resolved = user_for_session(session)
    assert resolved.is_authenticated and not resolved.is_verified()
    assert DEVICE_ID_SESSION_KEY not in session


def test_signed_out_session_is_anonymous():
    resolved = user_for_session(SessionStore())
    assert not resolved.is_authenticated and not resolved.is_verified()


def test_http_requests_use_the_same_resolution(settings):
    assert "controlplane.second_factor.OTPMiddleware" in settings.MIDDLEWARE
    assert "django_otp.middleware.OTPMiddleware" not in settings.MIDDLEWARE
