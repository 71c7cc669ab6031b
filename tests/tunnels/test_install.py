"""The control plane serves the connector itself; the install commands use only that."""

from __future__ import annotations

import shlex
import stat
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest
from django.urls import reverse

from connector import __version__
from connector.wheel import wheel_filename
from tests.live_server import run_daphne
from tunnels.install import install_commands, install_warnings


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


# ------------------------------------------------------------------------------------------------ reachability


@pytest.mark.parametrize(
    ("public", "edge", "expected"),
    [
        ("https://zt.example.org", "", []),
        ("https://zt.example.org", "wss://edge.example.org", []),
        ("http://127.0.0.1:8000", "", ["PUBLIC_URL; CONNECTOR_EDGE_URL is not set", "127.0.0.1 is a loopback"]),
        ("http://localhost:8000", "", ["localhost always means the machine"]),
        ("http://zt.localhost:8000", "", ["zt.localhost always means"]),
        ("http://[::1]:8000", "", ["::1 is a loopback"]),
        ("http://127.8.9.10", "", ["127.8.9.10 is a loopback"]),
        ("http://0.0.0.0:8000", "", ["0.0.0.0 is not an address another machine can connect to"]),
        ("https://zt.example.org", "ws://127.0.0.1:9000", ["(CONNECTOR_EDGE_URL)", "Set CONNECTOR_EDGE_URL"]),
        ("http://localhost:8000", "wss://edge.example.org", ["download the connector", "Set PUBLIC_URL"]),
    ],
)
def test_install_warnings_say_when_other_machines_cannot_use_the_commands_and_how_to_fix_it(
    settings, public, edge, expected
):
    settings.PUBLIC_URL, settings.CONNECTOR_EDGE_URL = public, edge
    warnings = install_warnings()
    assert len(warnings) == (1 if expected else 0)
    for words in expected:
        assert words in warnings[0], warnings
    if expected:
        assert "restart" in warnings[0]


@pytest.mark.django_db
def test_the_wizard_shows_the_warning(client, settings, admin_a, org_a):
    from controlplane.actors import Actor
    from tests.controlplane.ui.conftest import sign_in
    from tunnels.services import tunnel_create

    tunnel = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    url = reverse("ui:tunnel", args=[org_a.account_id, tunnel.id.hex])
    sign_in(client, admin_a)
    settings.PUBLIC_URL, settings.CONNECTOR_EDGE_URL = "http://localhost:8000", ""
    assert "These commands work only on this machine" in client.get(url).content.decode()
    settings.PUBLIC_URL = "https://zt.example.org"
    assert "data-install-warning" not in client.get(url).content.decode()


# ------------------------------------------------------------------------------------------------ the scripts


def test_the_checkout_command_dials_the_connector_edge_url(settings):
    settings.PUBLIC_URL, settings.CONNECTOR_EDGE_URL = "https://zt.example.org", "wss://edge.example.org"
    checkout = {c["id"]: c["command"] for c in install_commands("tok")}["checkout"]
    assert checkout.endswith("--edge wss://edge.example.org")


def sandbox(tmp_path: Path, *, uid: int, sudo: bool, python: str = sys.executable) -> tuple[dict[str, str], Path]:
    """A PATH with only what the script may use: sh, python3, `id` answering `uid`, recording stubs of apt-get
    and dnf, a sudo that records and runs its command when `sudo`, and no systemctl. Returns (env, call log)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    calls = tmp_path / "calls.log"
    calls.touch()
    (bin_dir / "sh").symlink_to("/bin/sh")
    (bin_dir / "python3").symlink_to(python)

    def stub(name: str, body: str) -> None:
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)

    stub("id", f'if [ "$1" = "-u" ]; then echo {uid}; else exec /usr/bin/id "$@"; fi')
    for name in ("apt-get", "dnf"):
        stub(name, f'echo "{name} $*" >> {calls}')
    if sudo:
        stub("sudo", f'echo "sudo $*" >> {calls}; exec "$@"')
    env = {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path),
        "ZT_CONNECTOR_DIR": str(tmp_path / "opt"),
        "ZT_CONNECTOR_CONFIG_DIR": str(tmp_path / "etc"),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    return env, calls


def run_command(command: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """The command as a user's shell runs it after a paste."""
    return subprocess.run(  # noqa: S603
        ["/bin/bash", "-c", command], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_without_root_or_sudo_the_script_says_so_and_changes_nothing(tmp_path, settings):
    settings.PUBLIC_URL = "https://zt.example.org"
    env, calls = sandbox(tmp_path, uid=1000, sudo=False)
    for command in install_commands("eyJ0b2tlbiI6MX0="):
        if command["id"] in ("debian", "rhel", "systemd"):
            result = run_command(command["command"], env)
            assert result.returncode == 1, (command["id"], result)
            assert "zt-connector: run this as root, or install sudo first." in result.stderr
    assert calls.read_text() == "" and not (tmp_path / "opt").exists()


def test_a_debian_host_without_venv_gets_it_through_sudo_after_an_apt_update(tmp_path, settings):
    """A fresh Debian container has python3 without venv and no package lists. (python3 is a stub here that has
    no venv either, so the script stops at the venv step, after the package steps were run through sudo.)"""
    settings.PUBLIC_URL = "https://zt.example.org"
    fake_python = tmp_path / "python3-without-venv"
    fake_python.write_text(f'#!/bin/sh\necho "python3 $*" >> {tmp_path / "calls.log"}\nexit 1\n')
    fake_python.chmod(0o755)
    env, calls = sandbox(tmp_path, uid=1000, sudo=True, python=str(fake_python))
    debian = {c["id"]: c["command"] for c in install_commands("tok")}["debian"]
    result = run_command(debian, env)
    assert result.returncode != 0
    assert calls.read_text().splitlines() == [
        "python3 -c import venv, ensurepip",
        "sudo apt-get update -qq",
        "apt-get update -qq",
        "sudo apt-get install -y python3-venv",
        "apt-get install -y python3-venv",
        f"sudo python3 -m venv {tmp_path / 'opt'}",
        f"python3 -m venv {tmp_path / 'opt'}",
    ]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_install_scripts_install_and_run_a_connector_as_root_and_through_sudo_without_systemd(tmp_path, settings):
    """For real, against a live server: the Debian command as a user with sudo, then the RHEL command as root
    on a host with neither sudo nor systemd (a container); each installs the served wheel into a virtualenv and
    keeps the token; the foreground command they print then connects the tunnel."""
    from controlplane.actors import Actor
    from tests.factories import OrganisationFactory
    from tunnels.models import Connection
    from tunnels.services import tunnel_create, tunnel_token

    organisation = OrganisationFactory()
    tunnel = tunnel_create(organisation=organisation, name="container", actor=Actor.cli())
    with run_daphne() as server:
        settings.PUBLIC_URL, settings.CONNECTOR_EDGE_URL = server.url, ""
        token = tunnel_token(tunnel)
        commands = {c["id"]: c["command"] for c in install_commands(token)}
        opt, etc = tmp_path / "opt", tmp_path / "etc"

        env, calls = sandbox(tmp_path / "user", uid=1000, sudo=True)
        env.update(ZT_CONNECTOR_DIR=str(opt), ZT_CONNECTOR_CONFIG_DIR=str(etc))
        result = run_command(commands["debian"], env)
        assert result.returncode == 0, result
        logged = calls.read_text()
        assert f"sudo python3 -m venv {opt}" in logged and f"sudo {opt}/bin/pip install -q --no-index" in logged
        assert f"sudo {opt}/bin/zt-connector service install {token}" in logged
        assert "apt-get" not in logged  # python3 has venv already

        env, calls = sandbox(tmp_path / "root", uid=0, sudo=False)
        env.update(ZT_CONNECTOR_DIR=str(opt), ZT_CONNECTOR_CONFIG_DIR=str(etc))
        result = run_command(commands["rhel"], env)
        assert result.returncode == 0, result
        assert calls.read_text() == ""  # no sudo, and python3 is there: no dnf
        assert "daemon-reload" not in result.stdout + result.stderr
        assert "This host does not run systemd" in result.stdout and "supervisor" in result.stdout
        token_file = etc / "zt-connector.token"
        assert token_file.read_text().strip() == token and stat.S_IMODE(token_file.stat().st_mode) == 0o600
        foreground = next(line.strip() for line in result.stdout.splitlines() if " run --token-file " in line)
        assert foreground == f"{opt}/bin/zt-connector run --token-file {token_file}"

        # The command it shows runs the connector, which connects the tunnel.
        log = open(tmp_path / "connector.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(shlex.split(foreground), env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            deadline = time.monotonic() + 30
            while not Connection.objects.for_org(organisation).filter(tunnel=tunnel, closed_at__isnull=True).exists():
                assert process.poll() is None, (tmp_path / "connector.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / "connector.log").read_text()
                time.sleep(0.3)
        finally:
            process.terminate()
            process.wait(15)
            log.close()
