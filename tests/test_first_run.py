"""The embedded first run, as `make run` does it on a fresh machine: migrate, bootstrap, daphne — in a new data
directory, without DATABASE_URL, REDIS_URL or EMAIL_URL."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
MANAGE = str(settings.BASE_DIR / "manage.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def embedded_env(tmp_path) -> dict[str, str]:
    """The environment of a fresh machine: nothing configured but a data directory of its own."""
    unset = {
        "DATABASE_URL",
        "REDIS_URL",
        "EMAIL_URL",
        "CELERY_BROKER_URL",
        "SECRET_KEY",
        "CONTROLPLANE_MODE",
        "TEST_DB_NAME",
        "PUBLIC_URL",
        "BOOTSTRAP_TEAM",
        "BOOTSTRAP_ADMIN_EMAIL",
        "BOOTSTRAP_ADMIN_PASSWORD",
        "ALLOWED_HOSTS",
    }
    env = {key: value for key, value in os.environ.items() if key not in unset}
    env.update({"DATA_DIR": str(tmp_path / "data"), "DJANGO_SETTINGS_MODULE": "controlplane.settings"})
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, MANAGE, *args],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def make_run_daphne_command(port: int) -> list[str]:
    """The daphne command line of `make run`, read from the Makefile so that the two cannot drift apart."""
    makefile = (settings.BASE_DIR / "Makefile").read_text()
    recipe = makefile.split("\nrun:", 1)[1]
    line = next(line.strip() for line in recipe.splitlines() if "daphne " in line)
    line = line.replace("$(BIN)", str(BIN)).replace("$(PORT)", str(port)).replace("$(HOST)", "127.0.0.1")
    assert "$(" not in line, line
    assert "backlog=4096" in line
    return line.split()


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 60) -> tuple[int, bytes]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"daphne exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"no HTTP answer from {url} within {timeout}s")


def test_first_run_migrates_bootstraps_and_serves(embedded_env, tmp_path):
    migrated = manage(embedded_env, "migrate", "--no-input", "-v0")
    assert migrated.returncode == 0, migrated.stderr
    data_dir = Path(embedded_env["DATA_DIR"])
    assert (data_dir / "controlplane.sqlite3").exists()
    secret = data_dir / "secret_key"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600

    first = manage(embedded_env, "bootstrap")
    assert first.returncode == 0, first.stderr
    assert "URL:       http://127.0.0.1:8000/" in first.stdout
    assert "Email:     admin@example.com" in first.stdout
    assert "two-factor" in first.stdout
    assert "/account/set-password/" in first.stdout
    password = re.search(r"Password:\s+(\S+)", first.stdout)[1]

    check = manage(
        embedded_env,
        "shell",
        "-c",
        "from controlplane.models import User; "
        f"print(User.objects.get(email='admin@example.com').check_password({password!r}))",
    )
    assert check.stdout.strip().splitlines()[-1] == "True", check.stderr

    again = manage(embedded_env, "bootstrap")
    assert again.returncode == 0 and "Password" not in again.stdout and "signin_link" in again.stdout

    port = free_port()
    server = subprocess.Popen(
        make_run_daphne_command(port),
        cwd=settings.BASE_DIR,
        env=embedded_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        status, body = wait_for_http(f"http://127.0.0.1:{port}/client/v4/accounts", server)
        assert status == 401 and b'"success":false' in body
        status, _ = wait_for_http(f"http://127.0.0.1:{port}/login/", server)
        assert status < 500
    finally:
        server.terminate()
        try:
            _, errors = server.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            _, errors = server.communicate(timeout=5)
    assert "Traceback" not in errors, errors
    assert "backlog=4096" in errors  # daphne logs the endpoint it listens on


def test_production_mode_refuses_to_start_without_a_secret_key(embedded_env):
    env = {**embedded_env, "CONTROLPLANE_MODE": "production"}
    result = manage(env, "check")
    assert result.returncode != 0
    assert "SECRET_KEY is required when CONTROLPLANE_MODE=production" in result.stderr


def test_an_unknown_mode_is_refused(embedded_env):
    result = manage({**embedded_env, "CONTROLPLANE_MODE": "staging"}, "check")
    assert result.returncode != 0 and "CONTROLPLANE_MODE must be" in result.stderr
