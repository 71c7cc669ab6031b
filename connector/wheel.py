"""Builds the connector's pure-Python wheel in memory, so the control plane can serve
`/connector/download/zt_connector-<version>-py3-none-any.whl` to servers that can reach nothing else.

Deterministic: the same sources give the same bytes (sorted entries, fixed timestamps and permissions).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import zipfile
from io import BytesIO

from . import __version__

DIST_NAME = "zt-connector"
_DIST_FILENAME = "zt_connector"
_PACKAGE = "connector"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_SUMMARY = "Connector agent for the self-hosted zero-trust control plane (a cloudflared analogue)"


def wheel_filename(version: str = __version__) -> str:
    return f"{_DIST_FILENAME}-{version}-py3-none-any.whl"


def _package_files(package_dir: str) -> list[tuple[str, bytes]]:
    """The package's modules (every *.py directly in the package directory; no tests, caches or build files)."""
    files = []
    for name in sorted(os.listdir(package_dir)):
        path = os.path.join(package_dir, name)
        if name.endswith(".py") and os.path.isfile(path):
            with open(path, "rb") as handle:
                files.append((f"{_PACKAGE}/{name}", handle.read()))
    return files


def _metadata(version: str, readme: str) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {DIST_NAME}",
        f"Version: {version}",
        f"Summary: {_SUMMARY}",
        "Requires-Python: >=3.9",
        "License: Proprietary",
        "Provides-Extra: fast",
        'Requires-Dist: uvloop; extra == "fast" and sys_platform != "win32"',
        'Requires-Dist: httptools; extra == "fast"',
        'Requires-Dist: websockets; extra == "fast"',
        "Description-Content-Type: text/markdown",
    ]
    return "\n".join(lines) + "\n\n" + readme


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
    return f"sha256={digest}"


def build_wheel(package_dir: str | None = None, version: str = __version__) -> tuple[str, bytes]:
    """(file name, wheel bytes) for the package in `package_dir` (this package by default)."""
    package_dir = package_dir or os.path.dirname(os.path.abspath(__file__))
    readme_path = os.path.join(package_dir, "README.md")
    readme = ""
    if os.path.exists(readme_path):
        with open(readme_path, encoding="utf-8") as handle:
            readme = handle.read()
    dist_info = f"{_DIST_FILENAME}-{version}.dist-info"
    entries = _package_files(package_dir)
    entries += [
        (f"{dist_info}/METADATA", _metadata(version, readme).encode("utf-8")),
        (
            f"{dist_info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: zt-connector (connector/wheel.py)\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n",
        ),
        (f"{dist_info}/entry_points.txt", b"[console_scripts]\nzt-connector = connector.cli:main\n"),
        (f"{dist_info}/top_level.txt", b"connector\n"),
    ]
    record_path = f"{dist_info}/RECORD"
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in entries) + f"{record_path},,\n"
    entries.append((record_path, record.encode("utf-8")))

    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, data in entries:
            info = zipfile.ZipInfo(path, date_time=_ZIP_DATE)
            info.external_attr = (0o100644 & 0xFFFF) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so the permission bits are honoured everywhere
            archive.writestr(info, data)
    return wheel_filename(version), buffer.getvalue()


@functools.lru_cache(maxsize=1)
def cached_wheel() -> tuple[str, bytes]:
    """The wheel of the running sources, built once per process (what the download view serves)."""
    return build_wheel()
