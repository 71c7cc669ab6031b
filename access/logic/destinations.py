"""Which application covers a request: hostnames (exact, or one wildcard label) and paths (`*` spans segments).

Cloudflare's rules (docs `access-controls/policies/app-paths.mdx`): `*.example.com` covers exactly one level
(neither the apex nor `a.b.example.com`); partial labels such as `*test.example.com` are allowed; at most one
`*` per label or path segment; `example.com` and `example.com/*` cover every path; `example.com/alpha/*` does not
cover `/alpha` itself; a `*` inside a path may span segments. A path without `*` covers itself and everything
below it (`/alpha` covers `/alpha` and `/alpha/x`, not `/alphabet`). When several destinations cover a request,
the most specific wins: the longer literal path first, then an exact hostname over a wildcard one, then the
longer literal hostname.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

_LABEL = re.compile(r"^(?:[a-z0-9*](?:[a-z0-9*-]{0,61}[a-z0-9*])?)$")
_PATH_CHARS = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*$")
MAX_URI_LENGTH = 512


@dataclass(frozen=True)
class Destination:
    """One parsed `uri` of an application: `host` lower-case (IDN as punycode), `path` "" for every path."""

    host: str
    path: str = ""
    _host_re: re.Pattern[str] | None = field(default=None, compare=False, repr=False)
    _path_re: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @property
    def uri(self) -> str:
        return self.host + self.path

    @property
    def wildcard_host(self) -> bool:
        return "*" in self.host

    @property
    def specificity(self) -> tuple[int, int, int]:
        literal_path = len(self.path.replace("*", "")) if self.path not in ("", "/*") else 0
        return (literal_path, 0 if self.wildcard_host else 1, len(self.host.replace("*", "")))

    def covers(self, host: str, path: str) -> bool:
        if self._host_re is None:
            if host != self.host:
                return False
        elif not self._host_re.match(host):
            return False
        if self._path_re is None:
            return True
        return bool(self._path_re.match(path or "/"))


def _host_regex(host: str) -> re.Pattern[str] | None:
    if "*" not in host:
        return None
    first, _, rest = host.partition(".")
    label = "[a-z0-9-]*".join(re.escape(part) for part in first.split("*"))
    return re.compile(f"^{label}\\.{re.escape(rest)}$")


def _path_regex(path: str) -> re.Pattern[str] | None:
    if path in ("", "/", "/*"):
        return None
    body = ".*".join(re.escape(part) for part in path.split("*"))
    if "*" in path:
        return re.compile(f"^{body}$")
    return re.compile(f"^{body.rstrip('/')}(?:/.*)?$")


def host_in_zone(host: str, zone_name: str) -> bool:
    """Whether a destination host (`app.example.com`, `*.example.com`) lies under the zone `zone_name`."""
    return host == zone_name or host.endswith("." + zone_name)


def parse_destination(uri: object) -> Destination:
    """Parse and check one destination `uri` (`app.example.com`, `*.example.com/admin/*`); ValueError says why."""
    if not isinstance(uri, str) or not uri.strip():
        raise ValueError("A destination is a hostname with an optional path, e.g. “app.example.com/admin”.")
    text = uri.strip()
    if len(text) > MAX_URI_LENGTH:
        raise ValueError(f"“{text[:40]}…”: at most {MAX_URI_LENGTH} characters.")
    if "://" in text:
        text = text.split("://", 1)[1]
    if "?" in text or "#" in text:
        raise ValueError(f"“{uri}”: query strings and # anchors are not supported in application paths.")
    host, slash, path = text.partition("/")
    path = slash + path if slash else ""
    if ":" in host:
        raise ValueError(f"“{uri}”: no port in a destination (requests are matched without their port).")
    host = host.rstrip(".").lower()
    try:
        host = ".".join(label if "*" in label else label.encode("idna").decode("ascii") for label in host.split("."))
    except UnicodeError:
        raise ValueError(f"“{uri}”: “{host}” is not a valid hostname.") from None
    labels = host.split(".")
    if len(labels) < 2 or any(not label or not _LABEL.match(label) for label in labels):
        raise ValueError(f"“{uri}”: “{host}” is not a valid hostname.")
    if any("*" in label for label in labels[1:]) or labels[0].count("*") > 1:
        raise ValueError(f"“{uri}”: a wildcard may stand only in the first label, once (e.g. “*.example.com”).")
    if not _PATH_CHARS.match(path):
        raise ValueError(f"“{uri}”: the path has characters that are not allowed in a URL path.")
    if any(segment.count("*") > 1 for segment in path.split("/")):
        raise ValueError(f"“{uri}”: at most one “*” between two slashes.")
    if path in ("/", "/*"):
        path = ""
    return Destination(host=host, path=path, _host_re=_host_regex(host), _path_re=_path_regex(path))


@dataclass
class DestinationIndex(Generic[T]):
    """Applications by destination, for the request path: exact hosts in a dict, wildcards by parent domain."""

    exact: dict[str, list[tuple[Destination, T]]] = field(default_factory=dict)
    wildcard: dict[str, list[tuple[Destination, T]]] = field(default_factory=dict)

    @classmethod
    def build(cls, entries: Iterable[tuple[Sequence[Destination], T]]) -> DestinationIndex[T]:
        index: DestinationIndex[T] = cls()
        for destinations, item in entries:
            for destination in destinations:
                if destination.wildcard_host:
                    index.wildcard.setdefault(destination.host.partition(".")[2], []).append((destination, item))
                else:
                    index.exact.setdefault(destination.host, []).append((destination, item))
        return index

    def match(self, host: str, path: str) -> T | None:
        """The item of the most specific destination covering `host` + `path`, or None."""
        host = host.rstrip(".").lower()
        best: tuple[tuple[int, int, int], T] | None = None
        candidates = list(self.exact.get(host, ()))
        parent = host.partition(".")[2]
        if parent:
            candidates.extend(self.wildcard.get(parent, ()))
        for destination, item in candidates:
            if destination.covers(host, path) and (best is None or destination.specificity > best[0]):
                best = (destination.specificity, item)
        return best[1] if best else None
