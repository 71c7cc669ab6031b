"""Helpers of the UI tests: signing a test client in (with or without a verified second factor)."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

BACKUP_CODES = ["aaaabbbb", "ccccdddd"]


@pytest.fixture(autouse=True)
def _fresh_throttles(settings):
    """Sign-in throttling counts failures in the cache; every test starts from none. (And a fast hasher.)"""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()
    yield
    cache.clear()


def totp_code(device: TOTPDevice, *, offset_steps: int = 0) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=offset_steps):06d}"


def add_second_factor(user) -> TOTPDevice:
    """A confirmed authenticator and two known backup codes for `user`."""
    device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    backup = StaticDevice.objects.create(user=user, name="Backup codes", confirmed=True)
    StaticToken.objects.bulk_create([StaticToken(device=backup, token=code) for code in BACKUP_CODES])
    return device


def sign_in(client, user, *, device: TOTPDevice | None = None):
    """Signed in as `user`; with `device`, the session has passed the second factor too."""
    client.force_login(user)
    if device is not None:
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()
    return client


@pytest.fixture
def admin_client(client, admin_a):
    return sign_in(client, admin_a)


@pytest.fixture
def reader_client(client, reader_a):
    return sign_in(client, reader_a)


@pytest.fixture
def outsider_client(client, admin_b):
    return sign_in(client, admin_b)
