"""`zt-connector service install|uninstall`: a systemd unit that runs the connector with its token in a 0600 file.

On a host that does not run systemd (a container, another init system) there is nothing to hand a unit to:
`install` keeps the token file only and the command line says how to run the connector in the foreground or under
another supervisor, instead of failing on `systemctl daemon-reload`."""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys

DEFAULT_UNIT_DIR = "/etc/systemd/system"
DEFAULT_CONFIG_DIR = "/etc/zt-connector"
DEFAULT_NAME = "zt-connector"
# Present only when systemd is the running init (sd_booted(3)); a container can have systemctl without it.
SYSTEMD_RUNTIME_DIR = "/run/systemd/system"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,200}$")


class ServiceError(Exception):
    pass


def _systemd_quote(arg: str) -> str:
    """One ExecStart argument: '%' and '$' are systemd specifiers/variables, quotes and spaces need quoting."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if re.search(r'[\s"\'\\;]', escaped) or not escaped:
        escaped = '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return escaped


def _package_parent() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _needs_pythonpath(parent: str) -> bool:
    """True when the package runs from a checkout rather than from an installed location."""
    installed = set(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    user_site = site.getusersitepackages() if hasattr(site, "getusersitepackages") else ""
    if user_site:
        installed.add(user_site)
    return os.path.realpath(parent) not in {os.path.realpath(path) for path in installed}


def unit_text(*, name: str, token_path: str, edge: str | None, python: str, extra_args: list[str]) -> str:
    exec_args = [python, "-m", "connector", "run", "--token-file", token_path]
    if edge:
        exec_args += ["--edge", edge]
    exec_args += extra_args
    parent = _package_parent()
    environment = ["Environment=PYTHONUNBUFFERED=1"]
    if _needs_pythonpath(parent):
        environment.append(f"Environment={_systemd_quote('PYTHONPATH=' + parent)}")
    return "\n".join(
        [
            "[Unit]",
            f"Description=zt-connector ({name}): outbound tunnel to the zero-trust control plane",
            "After=network-online.target",
            "Wants=network-online.target",
            "",
            "[Service]",
            "Type=simple",
            "ExecStart=" + " ".join(_systemd_quote(arg) for arg in exec_args),
            *environment,
            "Restart=always",
            "RestartSec=5s",
            # SIGTERM drains (up to --grace-period, 30 s by default) before the process exits.
            "KillSignal=SIGTERM",
            "TimeoutStopSec=45s",
            "NoNewPrivileges=yes",
            "PrivateTmp=yes",
            "",
            "[Install]",
            "WantedBy=multi-user.target",
            "",
        ]
    )


def _write(path: str, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # an existing file keeps its old mode otherwise
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def systemd_running() -> bool:
    return os.path.isdir(SYSTEMD_RUNTIME_DIR) and shutil.which("systemctl") is not None


def _is_system_unit_dir(unit_dir: str) -> bool:
    return os.path.abspath(unit_dir) == DEFAULT_UNIT_DIR


def _manages_system(unit_dir: str, enable: bool) -> bool:
    return enable and _is_system_unit_dir(unit_dir) and systemd_running()


def _systemctl(*args: str) -> None:
    result = subprocess.run(["systemctl", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise ServiceError(f"systemctl {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")


def install(
    *,
    token: str,
    edge: str | None = None,
    name: str = DEFAULT_NAME,
    unit_dir: str = DEFAULT_UNIT_DIR,
    config_dir: str = DEFAULT_CONFIG_DIR,
    enable: bool = True,
    force: bool = False,
    extra_args: list[str] | None = None,
) -> tuple[str, str, bool]:
    """Write the token file (0600) and the unit; enable and start it when it is the system's unit directory.
    Returns (unit path, token path, whether systemd was told). Without systemd running (and `enable`, in the
    system's unit directory) only the token file is written: the unit path returned is empty."""
    if not _NAME_RE.match(name):
        raise ServiceError(f"invalid service name {name!r}")
    unit_path = os.path.join(unit_dir, f"{name}.service")
    token_path = os.path.join(os.path.abspath(config_dir), f"{name}.token")
    if os.path.exists(unit_path) and not force:
        raise ServiceError(f"{unit_path} already exists; uninstall it first, or pass --force to overwrite")
    os.makedirs(config_dir, mode=0o700, exist_ok=True)
    if enable and _is_system_unit_dir(unit_dir) and not systemd_running():
        _write(token_path, token.strip() + "\n", 0o600)
        return "", token_path, False
    os.makedirs(unit_dir, exist_ok=True)
    _write(token_path, token.strip() + "\n", 0o600)
    text = unit_text(name=name, token_path=token_path, edge=edge, python=sys.executable, extra_args=extra_args or [])
    _write(unit_path, text, 0o644)
    managed = _manages_system(unit_dir, enable)
    if managed:
        _systemctl("daemon-reload")
        _systemctl("enable", "--now", f"{name}.service")
    return unit_path, token_path, managed


def uninstall(
    *,
    name: str = DEFAULT_NAME,
    unit_dir: str = DEFAULT_UNIT_DIR,
    config_dir: str = DEFAULT_CONFIG_DIR,
    enable: bool = True,
) -> list[str]:
    """Stop and disable the unit (system unit directory only), then remove the unit and the token file (only the
    token file, where no unit was installed: a host without systemd)."""
    if not _NAME_RE.match(name):
        raise ServiceError(f"invalid service name {name!r}")
    unit_path = os.path.join(unit_dir, f"{name}.service")
    token_path = os.path.join(config_dir, f"{name}.token")
    if not os.path.exists(unit_path) and not os.path.exists(token_path):
        raise ServiceError(f"{unit_path} does not exist: nothing to uninstall")
    if not os.path.exists(unit_path):
        os.remove(token_path)
        return [token_path]
    managed = _manages_system(unit_dir, enable)
    if managed:
        _systemctl("disable", "--now", f"{name}.service")
    removed = []
    for path in (unit_path, token_path):
        if os.path.exists(path):
            os.remove(path)
            removed.append(path)
    if managed:
        _systemctl("daemon-reload")
    return removed
