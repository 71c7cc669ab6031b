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
        "DATA_ENCRYPTION_KEY",
        "DATA_ENCRYPTION_KEYS",
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
    assert "--websocket_timeout -1" in line  # daphne would close every connector websocket after 24 h
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
    assert re.search(r"http://127\.0\.0\.1:8000/(account/set-password|reset)/\w+/[\w-]+/", first.stdout)
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


# Packaging and documentation stay in step with the settings.


def settings_environment_variables() -> set[str]:
    names: set[str] = set()
    sources = list((settings.BASE_DIR / "controlplane" / "settings").glob("*.py"))
    sources.append(settings.BASE_DIR / "controlplane" / "management" / "commands" / "bootstrap.py")
    for path in sources:
        text = path.read_text()
        names |= set(re.findall(r'\benv_(?:str|bool|int|list)\(\s*"([A-Z0-9_]+)"', text))
        names |= set(re.findall(r'persistent_secret\(\s*"([A-Z0-9_]+)"', text))
        names |= set(re.findall(r'os\.environ\.get\(\s*"([A-Z0-9_]+)"', text))
    return names


def test_every_environment_variable_is_documented_in_the_readme():
    names = settings_environment_variables()
    assert {"DATABASE_URL", "REDIS_URL", "EMAIL_URL", "SECRET_KEY", "BOOTSTRAP_TEAM"} <= names
    readme = (settings.BASE_DIR / "README.md").read_text()
    undocumented = sorted(name for name in names if f"`{name}`" not in readme)
    assert undocumented == [], f"add these to the configuration table of README.md: {undocumented}"


def compose_environment() -> dict[str, str]:
    """The app environment of docker-compose.yml, with `${VAR:?…}` given a dummy and `${VAR:-default}` its default."""
    import yaml

    compose = yaml.safe_load((settings.BASE_DIR / "docker-compose.yml").read_text())
    environment = compose["x-app"]["environment"]
    for service in ("migrate", "web", "worker", "beat"):
        assert compose["services"][service]["environment"] == environment, service

    def substitute(value: str) -> str:
        value = re.sub(r"\$\{(\w+):\?[^}]*\}", lambda m: f"compose-{m[1].lower()}", str(value))
        return re.sub(r"\$\{\w+:-([^}]*)\}", lambda m: m[1], value)

    return {name: substitute(value) for name, value in environment.items()}


def test_the_compose_environment_satisfies_production_settings(embedded_env):
    environment = compose_environment()
    assert environment["CONTROLPLANE_MODE"] == "production"
    assert environment["REDIS_URL"].startswith("redis://redis:")
    environment["DATA_ENCRYPTION_KEY"] = "A" * 43 + "="  # the placeholder must be a well-formed key (a system check)
    result = manage({**embedded_env, **environment}, "check")
    assert result.returncode == 0, result.stderr
    missing = manage({**embedded_env, **environment, "DATA_ENCRYPTION_KEY": ""}, "check")
    assert missing.returncode != 0 and "DATA_ENCRYPTION_KEY is required" in missing.stderr


def test_the_dockerfile_collectstatic_step_works_in_production_mode(embedded_env):
    dockerfile = (settings.BASE_DIR / "Dockerfile").read_text()
    image_env = dict(re.findall(r"^\s+(?:ENV\s+)?([A-Z_]+)=(\S+?)\s*\\?$", dockerfile, flags=re.MULTILINE))
    assert image_env["CONTROLPLANE_MODE"] == "production"
    step = re.search(r"RUN ((?:[A-Z_]+=\S+\s+)+)\\\s+python manage\.py collectstatic", dockerfile)
    assert step, "the Dockerfile collects static files at build"
    build_env = dict(assignment.split("=", 1) for assignment in step[1].split())
    env = {**embedded_env, "CONTROLPLANE_MODE": "production", **build_env}
    result = manage(env, "collectstatic", "--no-input", "--dry-run", "-v0")
    assert result.returncode == 0, result.stderr
    assert "backlog=4096" in dockerfile and "--websocket_timeout -1" in dockerfile and "USER controlplane" in dockerfile
