"""The connector package the control plane serves, and the install commands the UI shows for it.

The connector is standard-library only, so a server that can reach nothing but the control plane installs it
from this wheel with plain pip; no package index is needed."""

from __future__ import annotations

import functools
import shlex

from django.conf import settings

from connector import __version__ as CONNECTOR_VERSION
from connector.wheel import build_wheel, wheel_filename

__all__ = ["CONNECTOR_VERSION", "install_commands", "wheel", "wheel_url"]


@functools.lru_cache(maxsize=1)
def wheel() -> tuple[str, bytes]:
    return build_wheel()


def wheel_url() -> str:
    return f"{settings.PUBLIC_URL}/connector/download/{wheel_filename()}"


def install_commands(token: str) -> list[dict[str, str]]:
    """Copy-paste commands per platform, each installing the connector and running it with `token`."""
    url = wheel_url()
    quoted = shlex.quote(token)
    venv_install = f"sudo python3 -m venv /opt/zt-connector && sudo /opt/zt-connector/bin/pip install --no-index {url}"
    return [
        {
            "id": "debian",
            "label": "Debian / Ubuntu",
            "command": f"sudo apt-get install -y python3-venv && {venv_install} && "
            f"sudo /opt/zt-connector/bin/zt-connector service install {quoted}",
            "note": "Installs a systemd service that starts at boot and restarts on failure.",
        },
        {
            "id": "rhel",
            "label": "RHEL / Fedora / Rocky",
            "command": f"sudo dnf install -y python3 && {venv_install} && "
            f"sudo /opt/zt-connector/bin/zt-connector service install {quoted}",
            "note": "Installs a systemd service that starts at boot and restarts on failure.",
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
            "command": f"{venv_install} && sudo /opt/zt-connector/bin/zt-connector service install {quoted} && "
            "systemctl status zt-connector",
            "note": "`zt-connector service install` writes the token to a 0600 file and the unit to "
            "/etc/systemd/system/zt-connector.service; `service uninstall` removes both.",
        },
        {
            "id": "checkout",
            "label": "From a checkout of this repository",
            "command": f"python -m connector run --token {quoted} --edge {settings.PUBLIC_URL}",
            "note": "The same agent, without installing it.",
        },
    ]
