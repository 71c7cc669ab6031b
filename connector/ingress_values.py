"""The values inside ingress rules (connector/ingress.py is the module to import): durations, hostnames, path
patterns, origin services, and `IngressError` with cloudflared's error texts. Pure standard library, Python >= 3.9,
never imports Django."""

from __future__ import annotations

import dataclasses
import re
import unicodedata
import urllib.parse
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

try:  # Python >= 3.11; `sre_parse` still works there but warns that it is deprecated.
    from re import _parser as _sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python 3.9 and 3.10
    import sre_parse as _sre_parse  # type: ignore[no-redef]


class IngressError(ValueError):
    """An invalid configuration. `field` points at the offending value, e.g. `config.ingress[2].hostname`."""

    def __init__(self, message: str, field: str = "config") -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __repr__(self) -> str:
        return f"IngressError({self.message!r}, field={self.field!r})"


# --- cloudflared's error texts (ingress/ingress.go) -------------------------------------------------------------

ERR_NO_INGRESS_RULES = "The config file doesn't contain any ingress rules"
ERR_LAST_RULE_NOT_CATCH_ALL = (
    "The last ingress rule must match all URLs (i.e. it should not have a hostname or path filter)"
)
ERR_BAD_WILDCARD = (
    'Hostname patterns can have at most one wildcard character ("*") and it can only be used for subdomains, '
    'e.g. "*.example.com"'
)
ERR_HOSTNAME_CONTAINS_PORT = "Hostname cannot contain a port"
ERR_ACCESS_TEAM_NAME = "access.TeamName cannot be blank when access.audTags are present"

# Go's time.Duration is an int64 of nanoseconds: anything longer cannot be represented by cloudflared.
MAX_DURATION_SECONDS = (2**63 - 1) // 10**9


# --- durations ---------------------------------------------------------------------------------------------------

_GO_DURATION_UNITS = {
    "ns": 1,
    "us": 10**3,
    "\u00b5s": 10**3,  # micro sign
    "\u03bcs": 10**3,  # Greek mu
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_DURATION_FORMS = 'must be a whole number of seconds or a duration such as "30s" or "1m30s"'
_GO_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_duration(value: Any) -> int:
    """A duration in whole seconds, from JSON integer seconds (cloudflared's `CustomDuration`) or a Go duration
    string such as "30s" or "1m30s" (the YAML form). Raises ValueError with the reason."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(_DURATION_FORMS)
    if isinstance(value, int):
        seconds = value
    else:
        seconds = _parse_go_duration(value)
    if seconds < 0:
        raise ValueError("must not be negative")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"must be at most {MAX_DURATION_SECONDS} seconds")
    return seconds


def _parse_go_duration(text: str) -> int:
    """time.ParseDuration, restricted to results that are whole seconds."""
    invalid = ValueError(f'{_DURATION_FORMS}, not "{text}"')
    rest = text
    negative = rest[:1] == "-"
    if rest[:1] in ("-", "+"):
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise invalid
    nanoseconds = Fraction(0)
    position = 0
    while position < len(rest):
        part = _GO_DURATION_PART.match(rest, position)
        if part is None or part.group(1) in ("", "."):
            raise invalid
        nanoseconds += Fraction(part.group(1)) * _GO_DURATION_UNITS[part.group(2)]
        position = part.end()
    if nanoseconds.denominator != 1 or nanoseconds.numerator % 10**9:
        raise ValueError(f'must be a whole number of seconds, not "{text}"')
    seconds = nanoseconds.numerator // 10**9
    return -seconds if negative else seconds


# --- hostnames ---------------------------------------------------------------------------------------------------

_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Label separators that UTS #46 maps to a full stop (NFKC already folds the fullwidth and halfwidth forms to U+3002).
_IDEOGRAPHIC_FULL_STOP = "\u3002"


def _split_host_port(hostport: str) -> tuple[str, str] | None:
    """Go's net.SplitHostPort: (host, port), or None where Go returns an error."""
    colon = hostport.rfind(":")
    if colon < 0:
        return None
    start, end = 0, 0
    if hostport[0] == "[":
        close = hostport.find("]")
        if close < 0 or close + 1 != colon:
            return None
        host = hostport[1:close]
        start, end = 1, close + 1
    else:
        host = hostport[:colon]
        if ":" in host:
            return None
    if "[" in hostport[start:] or "]" in hostport[end:]:
        return None
    return host, hostport[colon + 1 :]


def _hostname_to_ascii(name: str) -> str:
    """Lower-case `name` and turn its unicode labels into punycode. Raises ValueError with the reason.

    UTS #46 (non-transitional, the browsers' and Go's idna.Lookup profile) approximated with the standard library:
    NFKC + lower-case mapping, then RFC 3492 Punycode; unicode labels may hold letters, marks, digits and hyphens.
    """
    if not name.isascii():
        name = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).lower())
        name = name.replace(_IDEOGRAPHIC_FULL_STOP, ".")
    else:
        name = name.lower()
    if name.endswith("."):
        raise ValueError("it must not end with a dot")
    labels = []
    for label in name.split("."):
        if not label:
            raise ValueError("it has an empty label")
        if label.isascii():
            if not _LDH_LABEL.fullmatch(label):
                raise ValueError(
                    f'the label "{label}" must be 1 to 63 letters, digits or hyphens, '
                    "and cannot start or end with a hyphen"
                )
            if label.startswith("xn--"):
                try:
                    label[4:].encode("ascii").decode("punycode")
                except UnicodeError:
                    raise ValueError(f'the label "{label}" is not valid punycode')
        else:
            if label.startswith("-") or label.endswith("-"):
                raise ValueError(f'the label "{label}" cannot start or end with a hyphen')
            if unicodedata.category(label[0]).startswith("M"):
                raise ValueError(f'the label "{label}" cannot start with a combining mark')
            for char in label:
                if char != "-" and unicodedata.category(char)[0] not in "LMN":
                    raise ValueError(f"the character {char!r} is not allowed in a hostname")
            label = "xn--" + label.encode("punycode").decode("ascii")
            if len(label) > 63:
                raise ValueError("a label is longer than 63 characters once encoded as punycode")
        labels.append(label)
    ascii_name = ".".join(labels)
    if len(ascii_name) > 253:
        raise ValueError("it is longer than 253 characters")
    return ascii_name


def canonical_host(host: str) -> str:
    """The form a request's Host is matched in: port stripped (IPv6 literal safe, as Go's net.SplitHostPort),
    one trailing dot dropped, lower-cased, unicode labels as punycode."""
    split = _split_host_port(host)
    if split is not None:
        host = split[0]
    if host.endswith("."):
        host = host[:-1]
    if host.isascii():
        return host.lower()
    try:
        return _hostname_to_ascii(host)
    except ValueError:
        return host.lower()


def normalise_rule_hostname(hostname: str, rule_index: int, total: int, path: str) -> str:
    """cloudflared's validateHostname, then our own DNS name check and normalisation."""
    where = f"config.ingress[{rule_index}].hostname"
    if _split_host_port(hostname) is not None:
        raise IngressError(ERR_HOSTNAME_CONTAINS_PORT, where)
    if hostname.rfind("*") > 0 or (hostname.startswith("*") and hostname != "*" and not hostname.startswith("*.")):
        raise IngressError(ERR_BAD_WILDCARD, where)
    catch_all = hostname in ("", "*") and path == ""
    last = rule_index == total - 1
    if last and not catch_all:
        filtered = where if hostname not in ("", "*") else f"config.ingress[{rule_index}].path"
        raise IngressError(ERR_LAST_RULE_NOT_CATCH_ALL, filtered)
    if not last and catch_all:
        raise IngressError(
            f"Rule #{rule_index + 1} is matching the hostname '{hostname}', but this will match every hostname, "
            "meaning the rules which follow it will never be triggered.",
            where,
        )
    if hostname in ("", "*"):
        return hostname
    wildcard = hostname.startswith("*.")
    try:
        ascii_name = _hostname_to_ascii(hostname[2:] if wildcard else hostname)
    except ValueError as error:
        raise IngressError(f'"{hostname}" is not a valid hostname: {error}', where)
    return "*." + ascii_name if wildcard else ascii_name


# --- paths -------------------------------------------------------------------------------------------------------

# Constructs Python's `re` accepts and Go's RE2 refuses; refused here too, so a configuration stays portable.
_RE2_UNSUPPORTED = {
    "GROUPREF": "backreferences are not supported (Go RE2 syntax)",
    "GROUPREF_EXISTS": "conditional groups are not supported (Go RE2 syntax)",
    "ASSERT": "lookahead and lookbehind assertions are not supported (Go RE2 syntax)",
    "ASSERT_NOT": "lookahead and lookbehind assertions are not supported (Go RE2 syntax)",
    "ATOMIC_GROUP": "atomic groups are not supported (Go RE2 syntax)",
    "POSSESSIVE_REPEAT": "possessive quantifiers are not supported (Go RE2 syntax)",
}


def _subpatterns(value: Any) -> Iterator[Any]:
    if isinstance(value, _sre_parse.SubPattern):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _subpatterns(item)


def _refuse_non_re2(pattern: Any) -> None:
    for op, argument in pattern:
        reason = _RE2_UNSUPPORTED.get(getattr(op, "name", str(op)))
        if reason:
            raise ValueError(reason)
        for child in _subpatterns(argument):
            _refuse_non_re2(child)


def compile_path(pattern: str) -> re.Pattern[str]:
    """Compile a rule's `path`. Raises ValueError with the reason.

    cloudflared compiles paths with Go's RE2 and Python has no RE2 in its standard library, so:

    * backreferences, lookarounds, conditional groups, atomic groups and possessive quantifiers are refused, because
      RE2 refuses them;
    * patterns are compiled with `re.ASCII`, so that `\\d`, `\\w`, `\\s` and `\\b` are ASCII-only as in RE2; the
      price is that `(?i)` folds ASCII letters only, where RE2 folds all of Unicode;
    * `$` also matches before a trailing newline in Python, never in RE2 (without `(?m)`);
    * a few spellings differ: RE2's `\\z` and `(?<name>...)`, `(?U)` are errors in Python (before 3.14), Python's
      `\\Z`, `(?x)`, `(?#...)` and `{,n}` are not RE2;
    * Python's engine backtracks where RE2 runs in linear time, so a pathological pattern (`(a+)+$`) can be slow.
    """
    try:
        _refuse_non_re2(_sre_parse.parse(pattern, re.ASCII))
        return re.compile(pattern, re.ASCII)
    except re.error as error:
        raise ValueError(str(error))


# --- services ----------------------------------------------------------------------------------------------------

SERVICE_KINDS = ("http", "https", "unix", "unix+tls", "http_status", "hello_world")
_HTTP_SCHEMES = {"http": "http", "ws": "http", "https": "https", "wss": "https"}
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SUPPORTED_SERVICES = "http://, https://, ws://, wss://, unix:, unix+tls:, http_status: and hello_world"
_STATUS_DIGITS = re.compile(r"[+-]?[0-9]+")


@dataclasses.dataclass(frozen=True)
class Service:
    """A rule's origin, parsed once.

    kind: http | https | unix | unix+tls | http_status | hello_world (ws:// is http, wss:// is https, as cloudflared).
    url: for http/https, the origin's base URL with the effective scheme (`http://localhost:8080`), else "".
    host, port: for http/https, the origin host (IPv6 without brackets) and port (the scheme's default if omitted).
    path: for unix sockets, the socket path. status: for http_status, the status code.
    """

    kind: str
    raw: str
    url: str = ""
    host: str = ""
    port: int | None = None
    path: str = ""
    status: int | None = None


def _invalid_address(raw: str, reason: str) -> IngressError:
    return IngressError(f"{raw} is an invalid address, {reason}")


def parse_service(raw: str) -> Service:
    """Parse a rule's `service` as cloudflared does (ingress.go validateIngress). Raises IngressError."""
    if raw.startswith("unix:") or raw.startswith("unix+tls:"):
        kind, path = raw.split(":", 1)
        if not path:
            raise IngressError(f"{raw} is missing the path of the unix socket, e.g. {kind}:/run/app.sock")
        if "\x00" in path:
            raise IngressError(f"{raw!r} is an invalid unix socket path")
        return Service(kind=kind, raw=raw, path=path)
    if raw.startswith("http_status:"):
        digits = raw[len("http_status:") :]
        if not _STATUS_DIGITS.fullmatch(digits):
            # cloudflared wraps the strconv.Atoi error; the text is Go's.
            raise IngressError(f'invalid HTTP status code: strconv.Atoi: parsing "{digits}": invalid syntax')
        status = int(digits)
        if not 100 <= status <= 999:
            raise IngressError(f"invalid HTTP status code: {status}")
        return Service(kind="http_status", raw=raw, status=status)
    if raw in ("hello_world", "hello-world"):
        return Service(kind="hello_world", raw=raw)
    if raw in ("bastion", "socks-proxy"):
        raise IngressError(
            f"The {raw} service is not supported by this connector yet; supported services are {_SUPPORTED_SERVICES}"
        )
    if not raw or any(char.isspace() or not char.isprintable() for char in raw):
        # urlsplit would quietly drop some of them; Go's url.Parse refuses them.
        raise IngressError(f"{raw!r} is an invalid address: it is empty or contains spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(raw)
    except ValueError:  # an unclosed IPv6 bracket, for one
        raise _invalid_address(raw, "please make sure it has a scheme and a hostname")
    if not parts.scheme or not parts.hostname:
        raise _invalid_address(raw, "please make sure it has a scheme and a hostname")
    if parts.path:
        raise _invalid_address(
            raw,
            "ingress rules don't support proxying to a different path on the origin service. "
            "The path will be the same as the eyeball request's path",
        )
    scheme = parts.scheme.lower()
    if scheme not in _HTTP_SCHEMES:
        raise IngressError(
            f"{raw}: {scheme}:// services are not supported by this connector yet; "
            f"supported services are {_SUPPORTED_SERVICES}"
        )
    if "?" in raw or "#" in raw:
        raise _invalid_address(raw, "the origin service cannot have a query string or a fragment")
    if parts.username is not None:
        raise _invalid_address(raw, "credentials in the origin service are not supported")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise _invalid_address(raw, "the port must be a number between 1 and 65535")
    kind = _HTTP_SCHEMES[scheme]
    return Service(
        kind=kind,
        raw=raw,
        url=f"{kind}://{parts.netloc}",
        host=parts.hostname,
        port=port if port is not None else _DEFAULT_PORTS[kind],
    )
