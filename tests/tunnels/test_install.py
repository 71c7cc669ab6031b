"""The control plane serves the connector itself; the install commands use only that."""

from __future__ import annotations

import subprocess
import venv

import pytest

from connector import __version__
from connector.wheel import wheel_filename
from tests.live_server import run_daphne
from tunnels.install import install_commands


def test_wheel_is_served_and_other_names_are_404(client):
    response = client.get(f"/connector/download/{wheel_filename()}")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response.content[:2] == b"PK"
    assert client.get("/connector/download/evil.whl").status_code == 404


def test_install_commands_quote_the_token_and_point_at_this_server(settings):
    settings.PUBLIC_URL = "https://zt.example.org"
    commands = {c["id"]: c["command"] for c in install_commands("eyJhIjoi'x")}
    assert set(commands) == {"debian", "rhel", "macos", "docker", "systemd", "checkout"}
    for command in commands.values():
        assert "'eyJhIjoi'\"'\"'x'" in command  # shell-quoted, even with a quote inside
    assert f"https://zt.example.org/connector/download/{wheel_filename()}" in commands["debian"]
    assert "--no-index" in commands["debian"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_pip_installs_the_served_wheel_without_an_index(tmp_path):
    with run_daphne() as server:
        target = tmp_path / "venv"
        venv.EnvBuilder(with_pip=True).create(target)
        pip = target / "bin" / "pip"
        url = f"{server.url}/connector/download/{wheel_filename()}"
        subprocess.run([str(pip), "install", "-q", "--no-index", url], check=True, timeout=120)  # noqa: S603
        out = subprocess.run(  # noqa: S603
            [str(target / "bin" / "zt-connector"), "version"], check=True, capture_output=True, text=True, timeout=30
        ).stdout
        assert __version__ in out
