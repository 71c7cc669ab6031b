"""The connector package the control plane serves, and the install commands the UI shows for it.

The connector is standard-library only, so a server that can reach nothing but the control plane installs it
from this wheel with plain pip; no package index is needed.

The Linux commands are one small POSIX shell script each (`sh -c '…' sh TOKEN`): they run as root or through sudo
(`$SUDO`, empty for root: containers have no sudo), install the OS's Python only when venv is missing, and leave
the service to `zt-connector service install`, which on a host without systemd keeps the token and prints how to
run the connector in the foreground or under another supervisor."""

from __future__ import annotations

import functools
import ipaddress
import shlex
from urllib.parse import urlsplit

from django.conf import settings

from connector import __version__ as CONNECTOR_VERSION
from connector.wheel import build_wheel, wheel_filename

__all__ = ["CONNECTOR_VERSION", "install_commands", "install_warnings", "wheel", "wheel_url"]

INSTALL_DIR = "/opt/zt-connector"


@functools.lru_cache(maxsize=1)
def wheel() -> tuple[str, bytes]:
    return build_wheel()


def wheel_url() -> str:
    return f"{settings.PUBLIC_URL}/connector/download/{wheel_filename()}"


def connector_edge_url() -> str:
    """The address connectors dial (carried in tunnel tokens as "e")."""
    return settings.CONNECTOR_EDGE_URL or settings.PUBLIC_URL


# Root needs no sudo (and a container has none); anyone else needs sudo, or is told what to do.
_PRELUDE = (
    "set -e\n"
    'if [ "$(id -u)" -eq 0 ]; then SUDO=""\n'
    "elif command -v sudo >/dev/null 2>&1; then SUDO=sudo\n"
    'else echo "zt-connector: run this as root, or install sudo first." >&2; exit 1; fi\n'
    'DIR="${ZT_CONNECTOR_DIR:-' + INSTALL_DIR + '}"\n'
)
# Debian's python3 has no venv/ensurepip without python3-venv; a fresh container has no package lists either.
_DEBIAN_PYTHON = (
    'python3 -c "import venv, ensurepip" >/dev/null 2>&1 || '
    "{ $SUDO apt-get update -qq && $SUDO apt-get install -y python3-venv; }\n"
)
_RHEL_PYTHON = "command -v python3 >/dev/null 2>&1 || $SUDO dnf install -y python3\n"


def _linux_script(python_step: str, url: str, *, show_status: bool = False) -> str:
    script = (
        _PRELUDE
        + python_step
        + '$SUDO python3 -m venv "$DIR"\n'
        + f'$SUDO "$DIR/bin/pip" install -q --no-index {shlex.quote(url)}\n'
        + '$SUDO "$DIR/bin/zt-connector" service install "$1"\n'
    )
    if show_status:
        script += (
            "if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then\n"
            "  $SUDO systemctl --no-pager status zt-connector\n"
            "fi\n"
        )
    return script


def _sh(script: str, token: str) -> str:
    """`sh -c '<script>' sh <token>`: the script runs under sh whatever the user's shell, and the token is its $1."""
    return f"sh -c {shlex.quote(chr(10) + script)} sh {shlex.quote(token)}"


def install_commands(token: str) -> list[dict[str, str]]:
    """Copy-paste commands per platform, each installing the connector and running it with `token`."""
    url = wheel_url()
    quoted = shlex.quote(token)
    linux_note = (
        "Run it as root or as a user with sudo. It installs a systemd service that starts at boot and restarts on "
        "failure; on a host without systemd (a container) it installs the connector and prints how to run it in "
        "the foreground or under your own supervisor."
    )
    return [
        {
            "id": "debian",
            "label": "Debian / Ubuntu",
            "command": _sh(_linux_script(_DEBIAN_PYTHON, url), token),
            "note": linux_note,
        },
        {
            "id": "rhel",
            "label": "RHEL / Fedora / Rocky",
            "command": _sh(_linux_script(_RHEL_PYTHON, url), token),
            "note": linux_note,
        },
        {
            "id": "macos",
            "label": "macOS",
            "command": "python3 -m venv ~/.zt-connector && "
            f"~/.zt-connector/bin/pip install --no-index {url} && "
            f"~/.zt-connector/bin/zt-connector run --token {quoted}",
            "note": "Runs in the foreground; keep the terminal open or run it under launchd.",
        },
        {
            "id": "docker",
            "label": "Docker",
            "command": "docker run -d --restart unless-stopped --name zt-connector --network host "
            f"-e TUNNEL_TOKEN={quoted} python:3.12-slim sh -c "
            f'"pip install --no-index {url} && exec zt-connector run"',
            "note": "Host networking lets the connector reach services on the host's localhost.",
        },
        {
            "id": "systemd",
            "label": "Any Linux (systemd unit)",
            "command": _sh(_linux_script("", url, show_status=True), token),
            "note": "Needs python3 with venv. `zt-connector service install` writes the token to a 0600 file and the "
            "unit to /etc/systemd/system/zt-connector.service; `service uninstall` removes both. Without systemd it "
            "keeps the token file and prints the command to run instead.",
        },
        {
            "id": "checkout",
            "label": "From a checkout of this repository",
            "command": f"python -m connector run --token {quoted} --edge {shlex.quote(connector_edge_url())}",
            "note": "The same agent, without installing it.",
        },
    ]


def unreachable_reason(url: str) -> str:
    """Why another machine cannot use `url` ("" when it may): a loopback or unspecified address, or a name that
    always means the machine it is used on."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if not host:
        return "it has no host name"
    if host == "localhost" or host.endswith(".localhost"):
        return f"{host} always means the machine it is used on"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return ""
    if address.is_loopback:
        return f"{host} is a loopback address, which always means the machine it is used on"
    if address.is_unspecified:
        return f"{host} is not an address another machine can connect to"
    return ""


_AGAIN = "restart the control plane, then copy the command again (the token carries the address)."


def install_warnings() -> list[str]:
    """What keeps the install commands from working on another machine, and how to fix it."""
    public = settings.PUBLIC_URL
    edge = connector_edge_url()
    public_reason, edge_reason = unreachable_reason(public), unreachable_reason(edge)
    if not settings.CONNECTOR_EDGE_URL:
        if not public_reason:
            return []
        return [
            f"These commands work only on this machine: they use {public} (PUBLIC_URL; CONNECTOR_EDGE_URL is not "
            f"set), and {public_reason}. To install a connector on another server, set PUBLIC_URL to an address "
            "that server can reach (e.g. https://zt.example.com or http://192.168.1.10:8000), or set "
            "CONNECTOR_EDGE_URL too if connectors dial another address, " + _AGAIN
        ]
    warnings = []
    if edge_reason:
        warnings.append(
            f"Connectors dial {edge} (CONNECTOR_EDGE_URL), and {edge_reason}: a connector on another server cannot "
            "reach it. Set CONNECTOR_EDGE_URL to an address that server can reach (e.g. wss://edge.example.com), "
            + _AGAIN
        )
    if public_reason:
        warnings.append(
            f"The commands download the connector from {public} (PUBLIC_URL), and {public_reason}: on another server "
            "the download fails. Set PUBLIC_URL to the address people and servers use to reach this control plane "
            "(e.g. https://zt.example.com) and restart it."
        )
    return warnings
