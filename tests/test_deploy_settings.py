"""Production settings guards, as an operator meets them: `manage.py check` (and `check --deploy`) in a fresh
process with the environment of a production install."""

from __future__ import annotations

import secrets

import pytest
from cryptography.fernet import Fernet

from tests.test_first_run import embedded_env, manage  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slow


@pytest.fixture
def production_env(embedded_env):  # noqa: F811
    """What a production install sets: its own secrets and host name, no database or Redis needed for `check`."""
    return {
        **embedded_env,
        "CONTROLPLANE_MODE": "production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATA_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "zt.example.com",
        "PUBLIC_URL": "https://zt.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://zt.example.com",
    }


def test_check_deploy_is_clean_in_production(production_env):
    result = manage(production_env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_when_hsts_is_turned_off(production_env):
    result = manage({**production_env, "SECURE_HSTS_SECONDS": "0"}, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0 and "security.W004" in result.stderr


def test_hsts_and_https_redirect_are_on_in_production_and_off_in_embedded(production_env, embedded_env):  # noqa: F811
    script = (
        "from django.conf import settings as s;"
        "print(s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_HSTS_PRELOAD, s.SECURE_SSL_REDIRECT)"
    )

    def values(env: dict[str, str]) -> list[str]:
        return manage(env, "shell", "-c", script).stdout.splitlines()[-1].split()

    assert values(production_env) == ["31536000", "True", "False", "True"]
    assert values(embedded_env) == ["0", "True", "False", "False"]


def test_debug_is_refused_in_production(production_env):
    result = manage({**production_env, "DEBUG": "1"}, "check")
    assert result.returncode != 0
    assert "ImproperlyConfigured: DEBUG must not be on when CONTROLPLANE_MODE=production" in result.stderr


@pytest.mark.parametrize(
    "variable, value, named",
    [
        ("DATA_ENCRYPTION_KEY", "not-a-fernet-key", "DATA_ENCRYPTION_KEY"),
        ("DATA_ENCRYPTION_KEY", "c2hvcnQ=", "DATA_ENCRYPTION_KEY"),  # valid base64, 5 bytes
        ("DATA_ENCRYPTION_KEYS", f"{Fernet.generate_key().decode()},oops", "DATA_ENCRYPTION_KEYS"),
    ],
)
def test_check_fails_on_an_invalid_data_encryption_key(production_env, variable, value, named):
    result = manage({**production_env, variable: value}, "check")
    assert result.returncode != 0
    assert f"{named}: (controlplane.E002)" in result.stderr
    assert value.split(",")[-1] not in result.stderr  # the key itself is never echoed


def test_check_fails_on_an_invalid_key_in_embedded_mode_too(embedded_env):  # noqa: F811
    result = manage({**embedded_env, "DATA_ENCRYPTION_KEY": "short"}, "check")
    assert result.returncode != 0 and "controlplane.E002" in result.stderr
