"""Sign-in timing does not tell which emails have accounts (issue 14, item 8): every path runs the password hasher
exactly once (the design, counted with a real hasher), and a coarse timing comparison with a slow hasher."""

from __future__ import annotations

import statistics
import time

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher, PBKDF2PasswordHasher
from django.utils import timezone

from controlplane.models import User
from controlplane.services.auth import AccountLocked, InvalidCredentials, sign_in_password
from tests.factories import DEFAULT_PASSWORD, UserFactory


class CountingHasher(MD5PasswordHasher):
    """MD5 (fast) that counts how often a password is checked against a hash."""

    algorithm = "counting_md5"
    verified = 0

    def verify(self, password, encoded):
        CountingHasher.verified += 1
        return super().verify(password, encoded)


class SlowHasher(PBKDF2PasswordHasher):
    """PBKDF2 with enough iterations to take tens of milliseconds, as a production hasher takes hundreds."""

    algorithm = "slow_pbkdf2"
    iterations = 60_000


@pytest.fixture
def counting(settings):
    settings.PASSWORD_HASHERS = [f"{__name__}.CountingHasher"]
    CountingHasher.verified = 0
    return CountingHasher


def locked(user: User) -> User:
    User.objects.filter(pk=user.pk).update(locked_until=timezone.now() + timezone.timedelta(minutes=10))
    return user


def unusable(user: User) -> User:
    user.set_unusable_password()
    user.save()
    return user


def inactive(user: User) -> User:
    User.objects.filter(pk=user.pk).update(is_active=False)
    return user


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("case", "prepare", "password", "outcome"),
    [
        ("unknown email", None, "whatever-1", InvalidCredentials),
        ("locked account, right password", locked, DEFAULT_PASSWORD, AccountLocked),
        ("locked account, wrong password", locked, "wrong", AccountLocked),
        ("wrong password", lambda user: user, "wrong", InvalidCredentials),
        ("account without a password", unusable, "anything", InvalidCredentials),
        ("inactive account", inactive, DEFAULT_PASSWORD, InvalidCredentials),
        ("right password", lambda user: user, DEFAULT_PASSWORD, None),
    ],
)
def test_every_sign_in_path_runs_the_password_hasher_exactly_once(counting, case, prepare, password, outcome):
    user = UserFactory(email="real@alpha.test")  # hashed with the counting hasher (set_password: no verify)
    email = "nobody@alpha.test" if prepare is None else prepare(user).email
    counting.verified = 0
    if outcome is None:
        assert sign_in_password(email=email, password=password, ip="192.0.2.1") == user
    else:
        with pytest.raises(outcome):
            sign_in_password(email=email, password=password, ip="192.0.2.1")
    assert counting.verified == 1, case


def test_locked_unknown_and_wrong_take_as_long_as_a_hasher_run(client, db, settings):
    """The probe measured ~13 ms for a locked account and ~620 ms for an unknown email. With a hasher of tens of
    milliseconds every refusal now takes at least most of one hasher run (generous margins: shared machines)."""
    settings.PASSWORD_HASHERS = [f"{__name__}.SlowHasher"]
    settings.LOGIN_MAX_FAILURES = 1000
    settings.LOGIN_IP_MAX_FAILURES = 1000
    real = UserFactory(email="real@alpha.test")
    victim = locked(UserFactory(email="locked@alpha.test"))

    def median_seconds(email: str, password: str) -> float:
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            response = client.post("/login/", {"email": email, "password": password})
            samples.append(time.perf_counter() - started)
            assert response.status_code == 200
        return statistics.median(samples)

    started = time.perf_counter()
    SlowHasher().verify("x", real.password)
    one_hash = time.perf_counter() - started
    timings = {
        "wrong password": median_seconds(real.email, "wrong-password"),
        "unknown email": median_seconds("nobody@alpha.test", "wrong-password"),
        "locked account": median_seconds(victim.email, DEFAULT_PASSWORD),
    }
    assert min(timings.values()) >= 0.6 * one_hash, (one_hash, timings)
    assert max(timings.values()) <= 3 * min(timings.values()), timings
