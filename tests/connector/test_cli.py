"""The `zt-connector` command: arguments, token sources, service install, and real `python -m connector run`
processes against the fake control plane (SIGTERM drains and exits 0)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import stat
import sys
from pathlib import Path

import pytest

from connector import __version__, cli, service
from connector.protocol import CloseCode, Kind
from connector.token import INVALID_TOKEN_MESSAGE, encode_token

from .conftest import ACCOUNT, SECRET, TOKEN, TUNNEL_ID
from .test_metrics import http_get

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def restore_connector_logger():
    """cli.configure_logging() takes the "connector" logger over; give it back to pytest afterwards."""
    logger = logging.getLogger("connector")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


def test_version(capsys):
    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out.startswith(f"zt-connector version {__version__} (Python ")


@pytest.mark.parametrize("token", ["", "not base64!", "bm90IGpzb24=", "W10=", encode_token(ACCOUNT, "nope", b"s")])
def test_run_with_a_bad_token_fails_clearly(token, capsys, monkeypatch):
    monkeypatch.delenv("TUNNEL_TOKEN", raising=False)
    assert cli.main(["run", "--token", token, "--edge", "ws://127.0.0.1:1"]) == 1
    assert capsys.readouterr().err.splitlines()[0] == INVALID_TOKEN_MESSAGE


def test_run_without_any_token(capsys, monkeypatch):
    monkeypatch.delenv("TUNNEL_TOKEN", raising=False)
    monkeypatch.delenv("TUNNEL_TOKEN_FILE", raising=False)
    assert cli.main(["run", "--edge", "ws://127.0.0.1:1"]) == 1
    assert "no token" in capsys.readouterr().err


def test_run_without_an_address(capsys):
    assert cli.main(["run", "--token", TOKEN]) == 1
    assert "pass --edge" in capsys.readouterr().err


def test_token_wins_over_token_file(tmp_path, monkeypatch):
    other = encode_token(ACCOUNT, "11111111-2222-4333-8444-555555555555", SECRET)
    path = tmp_path / "token"
    path.write_text(other + "\n")
    monkeypatch.setenv("TUNNEL_TOKEN_FILE", str(path))
    monkeypatch.delenv("TUNNEL_TOKEN", raising=False)
    assert cli._load_token(cli.build_parser().parse_args(["run"])).tunnel_id.startswith("11111111")
    monkeypatch.setenv("TUNNEL_TOKEN", TOKEN)
    assert cli._load_token(cli.build_parser().parse_args(["run"])).tunnel_id == TUNNEL_ID
    args = cli.build_parser().parse_args(["run", "--token-file", str(path)])
    assert cli._load_token(args).tunnel_id == TUNNEL_ID  # the token (here from the environment) still wins


def test_unreadable_token_file(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("TUNNEL_TOKEN", raising=False)
    assert cli.main(["run", "--token-file", str(tmp_path / "missing"), "--edge", "ws://127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert INVALID_TOKEN_MESSAGE in err and "cannot read token file" in err


def test_service_install_and_uninstall(tmp_path, capsys):
    units, config = tmp_path / "units", tmp_path / "etc"
    args = ["--unit-dir", str(units), "--config-dir", str(config), "--no-enable"]
    assert cli.main(["service", "install", TOKEN, "--edge", "https://cp.example.com", *args]) == 0
    unit = (units / "zt-connector.service").read_text()
    token_file = config / "zt-connector.token"
    assert token_file.read_text().strip() == TOKEN
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert "Restart=always" in unit and "WantedBy=multi-user.target" in unit and "KillSignal=SIGTERM" in unit
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert exec_start == (
        f"ExecStart={sys.executable} -m connector run --token-file {token_file} --edge https://cp.example.com"
    )
    assert TOKEN not in unit  # the token is only in the 0600 file
    assert f"Environment=PYTHONPATH={REPO}" in unit  # run from a checkout here
    assert "systemctl daemon-reload" in capsys.readouterr().out

    # Installing over an existing unit needs --force.
    assert cli.main(["service", "install", TOKEN, "--edge", "https://cp.example.com", *args]) == 1
    assert "already exists" in capsys.readouterr().err
    assert cli.main(["service", "install", TOKEN, "--edge", "https://x.example.com", "--force", *args]) == 0

    assert cli.main(["service", "uninstall", *args]) == 0
    assert not (units / "zt-connector.service").exists() and not token_file.exists()
    assert cli.main(["service", "uninstall", *args]) == 1


def test_service_install_refuses_bad_input(tmp_path, capsys):
    args = ["--unit-dir", str(tmp_path), "--config-dir", str(tmp_path), "--no-enable"]
    assert cli.main(["service", "install", "garbage", *args]) == 1
    assert INVALID_TOKEN_MESSAGE in capsys.readouterr().err
    assert cli.main(["service", "install", TOKEN, *args]) == 1  # no "e" in the token and no --edge
    assert "pass --edge" in capsys.readouterr().err
    assert cli.main(["service", "install", TOKEN, "--edge", "https://h", "--name", "../evil", *args]) == 1
    assert list(tmp_path.iterdir()) == []


def test_unit_quotes_what_systemd_would_misread():
    text = service.unit_text(
        name="x", token_path="/etc/my dir/x.token", edge="https://h/?a=%20$b", python="/usr/bin/python3", extra_args=[]
    )
    assert 'ExecStart=/usr/bin/python3 -m connector run --token-file "/etc/my dir/x.token"' in text
    assert "--edge https://h/?a=%%20$$b" in text


# ---------------------------------------------------------------------------------------------- real processes


async def start_connector(*args: str, env: dict | None = None) -> asyncio.subprocess.Process:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("TUNNEL_")}
    environment.update(env or {})
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "connector",
        "run",
        "--metrics",
        "127.0.0.1:0",
        "--loglevel",
        "debug",
        *args,
        cwd=REPO,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def metrics_address(process: asyncio.subprocess.Process) -> tuple[str, int]:
    while True:
        line = (await asyncio.wait_for(process.stderr.readline(), 10)).decode()
        assert line, "the connector exited early"
        found = re.search(r"Starting metrics server on ([\d.]+):(\d+)/metrics", line)
        if found:
            return found.group(1), int(found.group(2))


@pytest.mark.slow
async def test_sigterm_drains_and_exits_zero(edge):
    process = await start_connector("--token", TOKEN, "--edge", f"ws://127.0.0.1:{edge.port}", "--ha-connections", "2")
    try:
        address = await metrics_address(process)
        conns = [await edge.next_connection(timeout=10), await edge.next_connection(timeout=10)]
        assert {conn.hello.conn_index for conn in conns} == {0, 1}
        for _ in range(100):
            status, _, body = await http_get(address, "/ready")
            if status == 200 and json.loads(body)["readyConnections"] == 2:
                break
            await asyncio.sleep(0.05)
        assert json.loads(body) == {"status": 200, "readyConnections": 2, "connectorId": conns[0].hello.connector_id}

        process.send_signal(signal.SIGTERM)
        for conn in conns:
            assert (await conn.expect(Kind.DRAIN)).reason == "connector shutting down"
            assert (await conn.close_seen())[0] == CloseCode.GOING_AWAY
        assert await asyncio.wait_for(process.wait(), 10) == 0
        stderr = (await process.stderr.read()).decode()
        assert "draining connections" in stderr and "zt-connector stopped" in stderr
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.slow
async def test_token_from_a_file_and_address_from_the_token(edge, tmp_path):
    token = encode_token(ACCOUNT, TUNNEL_ID, SECRET, endpoint=f"http://127.0.0.1:{edge.port}")
    edge.token = token
    path = tmp_path / "token"
    path.write_text(token + "\n")
    process = await start_connector(env={"TUNNEL_TOKEN_FILE": str(path)})
    try:
        conn = await edge.next_connection(timeout=10)
        assert edge.auth_headers[-1] == f"Bearer {token}"
        assert conn.hello.ha_connections == 2
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.slow
async def test_keeps_retrying_until_the_server_appears():
    from .conftest import FakeEdge

    probe = await FakeEdge().start()
    port = probe.port
    await probe.stop()
    process = await start_connector("--token", TOKEN, "--edge", f"ws://127.0.0.1:{port}", "--ha-connections", "1")
    try:
        await asyncio.sleep(1.0)  # refused a few times meanwhile
        assert process.returncode is None
        edge = await FakeEdge().start(port)
        try:
            await edge.next_connection(timeout=15)
        finally:
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 10) == 0
            await edge.stop()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_service_install_without_systemd_keeps_the_token_and_says_how_to_run_it(tmp_path, capsys, monkeypatch):
    """A container (or another init system) may even have systemctl, but no systemd to talk to: no unit, no
    `systemctl daemon-reload failed`, and the foreground command instead."""
    monkeypatch.setattr(service, "DEFAULT_UNIT_DIR", str(tmp_path / "units"))
    monkeypatch.setattr(service, "SYSTEMD_RUNTIME_DIR", str(tmp_path / "not-booted-with-systemd"))
    called = []
    monkeypatch.setattr(service, "_systemctl", lambda *args: called.append(args))
    config = tmp_path / "etc"
    args = ["--unit-dir", str(tmp_path / "units"), "--config-dir", str(config)]
    assert cli.main(["service", "install", TOKEN, "--edge", "https://cp.example.com", *args]) == 0
    out = capsys.readouterr().out
    token_file = config / "zt-connector.token"
    assert token_file.read_text().strip() == TOKEN and stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert not (tmp_path / "units").exists() and called == []
    assert "does not run systemd" in out and "no service was installed" in out
    assert f"run --token-file {token_file} --edge https://cp.example.com" in out and "supervisor" in out
    assert TOKEN not in out

    assert cli.main(["service", "uninstall", *args]) == 0
    assert not token_file.exists()
    assert cli.main(["service", "uninstall", *args]) == 1
