"""The wheel the control plane serves: built in memory, deterministic, installable by pip with nothing else."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from connector import __version__
from connector.protocol import CloseCode, Kind
from connector.wheel import build_wheel, cached_wheel, wheel_filename

from .conftest import TOKEN


def test_wheel_is_complete_and_deterministic():
    name, data = build_wheel()
    assert name == wheel_filename() == f"zt_connector-{__version__}-py3-none-any.whl"
    assert build_wheel()[1] == data == cached_wheel()[1]
    archive = zipfile.ZipFile(io.BytesIO(data))
    names = archive.namelist()
    dist_info = f"zt_connector-{__version__}.dist-info"
    for module in ("__init__", "__main__", "cli", "protocol", "supervisor", "websocket", "token", "metrics"):
        assert f"connector/{module}.py" in names
    assert not [n for n in names if "test" in n or "__pycache__" in n or n.endswith((".toml", ".pyc"))]
    metadata = archive.read(f"{dist_info}/METADATA").decode()
    assert "Name: zt-connector\n" in metadata and f"Version: {__version__}\n" in metadata
    assert "Requires-Python: >=3.9" in metadata and "Requires-Dist: uvloop; extra == " in metadata
    assert "Root-Is-Purelib: true" in archive.read(f"{dist_info}/WHEEL").decode()
    assert archive.read(f"{dist_info}/entry_points.txt") == b"[console_scripts]\nzt-connector = connector.cli:main\n"
    # RECORD lists every other file with its sha256 and size.
    record = archive.read(f"{dist_info}/RECORD").decode().splitlines()
    assert sorted(line.split(",")[0] for line in record) == sorted(names)
    for line in record:
        path, digest, size = line.split(",")
        if path.endswith("RECORD"):
            assert digest == size == ""
            continue
        content = archive.read(path)
        expected = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
        assert (digest, int(size)) == (f"sha256={expected}", len(content))
    assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def _pythons() -> list[str]:
    """This interpreter, and the oldest supported one (3.9) when the machine has it."""
    found = [sys.executable]
    for candidate in (os.path.expanduser("~/.pyenv/versions/3.9.18/bin/python3.9"), shutil.which("python3.9")):
        if candidate and subprocess.run([candidate, "-c", "import venv"], capture_output=True).returncode == 0:
            found.append(candidate)
            break
    return found


def _install(python: str, tmp_path: Path) -> Path:
    name, data = build_wheel()
    wheel = tmp_path / name
    wheel.write_bytes(data)
    venv = tmp_path / "venv"
    if python == sys.executable:  # fast: the project's pip installs into a venv without one
        subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True)
        pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    else:  # another interpreter: its own bundled pip (today's pip may not support it)
        subprocess.run([python, "-m", "venv", str(venv)], check=True, capture_output=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip"]
    # No index and no dependencies to fetch: the wheel is all a server needs.
    result = subprocess.run([*pip, "install", "-q", "--no-index", str(wheel)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return venv


@pytest.mark.slow
@pytest.mark.parametrize("python", _pythons(), ids=lambda path: Path(path).name)
async def test_pip_installs_the_wheel_and_the_command_runs(python, tmp_path, edge):
    venv = _install(python, tmp_path)
    out = subprocess.run([str(venv / "bin" / "zt-connector"), "version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith(f"zt-connector version {__version__}")
    # The installed command connects, registers and drains, away from the checkout (proves nothing leaks in).
    process = await asyncio.create_subprocess_exec(
        str(venv / "bin" / "zt-connector"),
        "run",
        "--edge",
        f"ws://127.0.0.1:{edge.port}",
        "--ha-connections",
        "1",
        "--metrics",
        "127.0.0.1:0",
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", ""), "TUNNEL_TOKEN": TOKEN},
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        conn = await edge.next_connection(timeout=15)
        version = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert conn.hello.platform.endswith(f"Python {version}")
        process.send_signal(signal.SIGTERM)
        await conn.expect(Kind.DRAIN)
        assert (await conn.close_seen())[0] == CloseCode.GOING_AWAY
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
