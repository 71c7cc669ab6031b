"""Ingress rules of a tunnel: validation, origin-request settings and request matching.

One module shared by the control plane (it validates the configuration an admin saves through the UI or the API)
and by the connector (it validates each pushed configuration, then routes every proxied request to its rule). It is
pure standard library, runs on Python >= 3.9 and must never import Django.

It mirrors cloudflared's `ingress` package (`ingress.go`, `rule.go`, `config.go`, `origin_service.go`) and reuses its
error texts word for word where they exist. The deliberate differences are listed in docs/ingress.md.

Public API:

* `validate_config(config) -> dict`: validate a remote-managed configuration and return a normalised copy.
* `resolve_origin_request(rule, top_level) -> OriginRequest`: rule settings over top-level settings over defaults.
* `Ingress.from_config(config)` then `Ingress.match(host, path) -> (index, Rule)`: first matching rule wins.
* `public_hostnames(config) -> [(hostname, path)]`: the rules that name a hostname (DNS records, uniqueness).
* `parse_service(raw) -> Service`, `compile_path(pattern) -> re.Pattern`, `canonical_host(host) -> str`,
  `parse_duration(value) -> int`: the building blocks, for callers that need one piece.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
import urllib.parse
from collections.abc import Iterator, Mapping
from fractions import Fraction
from typing import Any

try:  # Python >= 3.11; `sre_parse` still works there but warns that it is deprecated.
    from re import _parser as _sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python 3.9 and 3.10
    import sre_parse as _sre_parse  # type: ignore[no-redef]

__all__ = [
    "DEFAULT_ORIGIN_REQUEST",
    "ORIGIN_REQUEST_FIELDS",
    "AccessSettings",
    "Ingress",
    "IngressError",
    "OriginRequest",
    "Rule",
    "Service",
    "canonical_host",
    "compile_path",
    "parse_duration",
    "parse_service",
    "public_hostnames",
    "resolve_origin_request",
    "validate_config",
]


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

TOP_LEVEL_KEYS = ("ingress", "originRequest", "warp-routing")
RULE_KEYS = ("hostname", "path", "service", "originRequest")

# --- originRequest -----------------------------------------------------------------------------------------------

DURATION_KEYS = ("connectTimeout", "tlsTimeout", "tcpKeepAlive", "keepAliveTimeout")
BOOL_KEYS = ("noHappyEyeballs", "noTLSVerify", "disableChunkedEncoding", "http2Origin", "matchSNItoHost")
STRING_KEYS = ("httpHostHeader", "originServerName", "caPool")
ORIGIN_REQUEST_KEYS = (*DURATION_KEYS, "keepAliveConnections", *BOOL_KEYS, *STRING_KEYS, "proxyType", "access")
ACCESS_KEYS = ("required", "teamName", "audTag")
# cloudflared settings that only serve services this connector cannot run yet (bastion, SOCKS, TCP).
UNSUPPORTED_ORIGIN_REQUEST_KEYS = ("bastionMode", "proxyAddress", "proxyPort", "ipRules")
WARP_ROUTING_KEYS = ("enabled", "connectTimeout", "tcpKeepAlive", "maxActiveFlows")

# Go's time.Duration is an int64 of nanoseconds: anything longer cannot be represented by cloudflared.
MAX_DURATION_SECONDS = (2**63 - 1) // 10**9
MAX_COUNT = 2**31 - 1

# Defaults from cloudflared's ingress/config.go, durations in seconds.
DEFAULT_ORIGIN_REQUEST: Mapping[str, Any] = {
    "connectTimeout": 30,
    "tlsTimeout": 10,
    "tcpKeepAlive": 30,
    "noHappyEyeballs": False,
    "keepAliveConnections": 100,
    "keepAliveTimeout": 90,
    "httpHostHeader": "",
    "originServerName": "",
    "matchSNItoHost": False,
    "caPool": "",
    "noTLSVerify": False,
    "disableChunkedEncoding": False,
    "http2Origin": False,
    "proxyType": "",
    "access": None,
}

# Wire key -> OriginRequest attribute.
ORIGIN_REQUEST_FIELDS = {
    "connectTimeout": "connect_timeout",
    "tlsTimeout": "tls_timeout",
    "tcpKeepAlive": "tcp_keep_alive",
    "noHappyEyeballs": "no_happy_eyeballs",
    "keepAliveConnections": "keep_alive_connections",
    "keepAliveTimeout": "keep_alive_timeout",
    "httpHostHeader": "http_host_header",
    "originServerName": "origin_server_name",
    "matchSNItoHost": "match_sni_to_host",
    "caPool": "ca_pool",
    "noTLSVerify": "no_tls_verify",
    "disableChunkedEncoding": "disable_chunked_encoding",
    "http2Origin": "http2_origin",
    "proxyType": "proxy_type",
    "access": "access",
}


@dataclasses.dataclass(frozen=True)
class AccessSettings:
    """`originRequest.access`: when `required`, the connector checks `Cf-Access-Jwt-Assertion` for the team."""

    required: bool = False
    team_name: str = ""
    aud_tags: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class OriginRequest:
    """The effective settings for requests to one origin. Durations are whole seconds."""

    connect_timeout: int = 30
    tls_timeout: int = 10
    tcp_keep_alive: int = 30
    no_happy_eyeballs: bool = False
    keep_alive_connections: int = 100
    keep_alive_timeout: int = 90
    http_host_header: str = ""
    origin_server_name: str = ""
    match_sni_to_host: bool = False
    ca_pool: str = ""
    no_tls_verify: bool = False
    disable_chunked_encoding: bool = False
    http2_origin: bool = False
    proxy_type: str = ""
    access: AccessSettings | None = None


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


def _normalise_rule_hostname(hostname: str, rule_index: int, total: int, path: str) -> str:
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


# --- validation --------------------------------------------------------------------------------------------------


def _validate_access(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise IngressError("access must be an object with required, teamName and audTag", where)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        at = f"{where}.{key}"
        if key not in ACCESS_KEYS:
            raise IngressError(
                f'Unknown access setting "{key}"; the allowed keys are required, teamName and audTag', at
            )
        if value is None:
            continue
        if key == "required":
            if not isinstance(value, bool):
                raise IngressError("access.required must be true or false", at)
        elif key == "teamName":
            if not isinstance(value, str):
                raise IngressError("access.teamName must be a string", at)
        elif not isinstance(value, (list, tuple)) or not all(isinstance(tag, str) for tag in value):
            raise IngressError("access.audTag must be a list of strings", at)
        else:
            value = list(value)
        out[key] = value
    if out.get("required") and not out.get("teamName") and out.get("audTag"):
        raise IngressError(ERR_ACCESS_TEAM_NAME, f"{where}.teamName")
    return out


def _validate_origin_request(raw: Any, where: str) -> dict[str, Any]:
    """Check every originRequest key and type; durations become integer seconds; null means "not set"."""
    if not isinstance(raw, Mapping):
        raise IngressError("originRequest must be an object", where)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        at = f"{where}.{key}"
        if key in UNSUPPORTED_ORIGIN_REQUEST_KEYS:
            raise IngressError(
                f"originRequest.{key} is not supported by this connector yet (it only applies to bastion, "
                "SOCKS and TCP services)",
                at,
            )
        if key not in ORIGIN_REQUEST_KEYS:
            raise IngressError(f'Unknown originRequest setting "{key}"', at)
        if value is None:
            continue
        if key in DURATION_KEYS:
            try:
                value = parse_duration(value)
            except ValueError as error:
                raise IngressError(f"{key} {error}", at)
        elif key == "keepAliveConnections":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
                raise IngressError(f"{key} must be a whole number between 0 and {MAX_COUNT}", at)
        elif key in BOOL_KEYS:
            if not isinstance(value, bool):
                raise IngressError(f"{key} must be true or false", at)
        elif key in STRING_KEYS:
            if not isinstance(value, str):
                raise IngressError(f"{key} must be a string", at)
            if any(not char.isprintable() for char in value):
                raise IngressError(f"{key} cannot contain control characters", at)
        elif key == "proxyType":
            if value not in ("", "socks"):
                raise IngressError('proxyType must be "" or "socks"', at)
        else:
            value = _validate_access(value, at)
        out[key] = value
    return out


def _validate_warp_routing(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise IngressError("warp-routing must be an object", where)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        at = f"{where}.{key}"
        if key not in WARP_ROUTING_KEYS:
            raise IngressError(
                f'Unknown warp-routing setting "{key}"; the allowed keys are {", ".join(WARP_ROUTING_KEYS)}', at
            )
        if value is None:
            continue
        if key == "enabled":
            if not isinstance(value, bool):
                raise IngressError("warp-routing.enabled must be true or false", at)
        elif key == "maxActiveFlows":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise IngressError("warp-routing.maxActiveFlows must be a whole number (0 or more)", at)
        else:
            try:
                value = parse_duration(value)
            except ValueError as error:
                raise IngressError(f"warp-routing.{key} {error}", at)
        out[key] = value
    return out


def _validate_rule_shape(raw: Any, index: int) -> dict[str, Any]:
    where = f"config.ingress[{index}]"
    if not isinstance(raw, Mapping):
        raise IngressError(f"Ingress rule #{index + 1} must be an object", where)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        at = f"{where}.{key}"
        if key not in RULE_KEYS:
            raise IngressError(
                f'Ingress rule #{index + 1} has an unknown key "{key}"; '
                "the allowed keys are hostname, path, service and originRequest",
                at,
            )
        if value is None:
            continue
        if key == "originRequest":
            value = _validate_origin_request(value, at)
        elif not isinstance(value, str):
            raise IngressError(f"{key} must be a string", at)
        out[key] = value
    return out


def validate_config(config: Any) -> dict[str, Any]:
    """Validate a remote-managed configuration `{ingress, originRequest?, "warp-routing"?}` (camelCase wire format).

    Returns a normalised copy: hostnames lower-cased with unicode labels in punycode, duration strings turned into
    integer seconds, `null` values dropped (they mean "not set"). Defaults are not filled in. Idempotent.
    Raises IngressError, whose `field` names the offending value.
    """
    if not isinstance(config, Mapping):
        raise IngressError("The configuration must be an object", "config")
    for key in config:
        if key not in TOP_LEVEL_KEYS:
            raise IngressError(
                f'Unknown configuration key "{key}"; the allowed keys are ingress, originRequest and warp-routing',
                f"config.{key}",
            )
    out: dict[str, Any] = {}
    if config.get("originRequest") is not None:
        out["originRequest"] = _validate_origin_request(config["originRequest"], "config.originRequest")
    if config.get("warp-routing") is not None:
        out["warp-routing"] = _validate_warp_routing(config["warp-routing"], "config.warp-routing")

    raw_rules = config.get("ingress")
    if raw_rules is not None and not isinstance(raw_rules, (list, tuple)):
        raise IngressError("ingress must be a list of rules", "config.ingress")
    if not raw_rules:
        raise IngressError(ERR_NO_INGRESS_RULES, "config.ingress")
    # Like cloudflared, which decodes the whole JSON document before it validates any rule: shapes and types first.
    rules = [_validate_rule_shape(raw, index) for index, raw in enumerate(raw_rules)]
    for index, rule in enumerate(rules):
        where = f"config.ingress[{index}]"
        if not rule.get("service"):
            raise IngressError(
                f'Rule #{index + 1} has no service; every rule needs one, e.g. "http://localhost:8080" or '
                '"http_status:404"',
                f"{where}.service",
            )
        try:
            parse_service(rule["service"])
        except IngressError as error:
            raise IngressError(error.message, f"{where}.service")
        hostname = _normalise_rule_hostname(rule.get("hostname", ""), index, len(rules), rule.get("path", ""))
        if "hostname" in rule:
            rule["hostname"] = hostname
        if rule.get("path"):
            try:
                compile_path(rule["path"])
            except ValueError as error:
                raise IngressError(f"Rule #{index + 1} has an invalid regex: {error}", f"{where}.path")
    out["ingress"] = rules
    return {key: out[key] for key in config if key in out}


# --- settings resolution -----------------------------------------------------------------------------------------


def _access_settings(raw: Mapping[str, Any]) -> AccessSettings:
    return AccessSettings(
        required=raw.get("required", False),
        team_name=raw.get("teamName", ""),
        aud_tags=tuple(raw.get("audTag", ())),
    )


def resolve_origin_request(
    rule: Mapping[str, Any] | None = None, top_level: Mapping[str, Any] | None = None
) -> OriginRequest:
    """The effective settings of a rule: its own `originRequest`, then the top-level one, then the defaults.

    Both arguments are `originRequest` objects in the wire format (validated here, so "30s" is accepted). `access`
    is taken as a whole from the first level that sets it, as cloudflared's setConfig does.
    """
    rule_settings = _validate_origin_request(rule or {}, "originRequest")
    top_settings = _validate_origin_request(top_level or {}, "config.originRequest")
    values: dict[str, Any] = {}
    for key in ORIGIN_REQUEST_KEYS:
        if key in rule_settings:
            value = rule_settings[key]
        elif key in top_settings:
            value = top_settings[key]
        else:
            continue
        values[ORIGIN_REQUEST_FIELDS[key]] = _access_settings(value) if key == "access" else value
    return OriginRequest(**values)


# --- compiled ingress and matching -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Rule:
    """One compiled ingress rule. `hostname` is normalised ("" or "*" match any host); `path` is the regex source."""

    index: int
    hostname: str
    path: str
    service: Service
    origin_request: OriginRequest
    path_regex: re.Pattern[str] | None = dataclasses.field(default=None, repr=False, compare=False)

    def matches(self, host: str, path: str) -> bool:
        """Whether this rule matches a canonical host (see `canonical_host`) and a decoded path."""
        hostname = self.hostname
        if hostname and hostname != "*":
            if hostname.startswith("*."):
                if not (host.endswith(hostname[1:]) and len(host) > len(hostname) - 1):
                    return False
            elif host != hostname:
                return False
        return self.path_regex is None or self.path_regex.search(path) is not None


def _request_path(path: str) -> str:
    """The part of a request target the path regex runs on: no query, percent-decoded like Go's URL.Path."""
    query = path.find("?")
    if query >= 0:
        path = path[:query]
    if "%" in path:
        path = urllib.parse.unquote(path)
    return path


class Ingress:
    """Compiled ingress rules of one configuration, ready to route requests.

    `match` keeps cloudflared's semantics (top to bottom, first match wins) but only tests the rules that can match
    the host: an index of exact hostnames, one of wildcard suffixes and the list of any-host rules, merged in rule
    order. The merged candidate list is cached per host (bounded).
    """

    CACHE_SIZE = 4096

    def __init__(self, rules: tuple[Rule, ...], defaults: OriginRequest, warp_routing: Mapping[str, Any] | None = None):
        if not rules:
            raise IngressError(ERR_NO_INGRESS_RULES, "config.ingress")
        self.rules = rules
        self.defaults = defaults
        self.warp_routing = dict(warp_routing or {})
        self._exact: dict[str, list[int]] = {}
        self._wildcard: dict[str, list[int]] = {}
        any_host: list[int] = []
        for rule in rules:
            if rule.hostname in ("", "*"):
                any_host.append(rule.index)
            elif rule.hostname.startswith("*."):
                self._wildcard.setdefault(rule.hostname[1:], []).append(rule.index)
            else:
                self._exact.setdefault(rule.hostname, []).append(rule.index)
        self._any_host = tuple(any_host)
        self._candidates_by_host: dict[str, tuple[int, ...]] = {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Ingress:
        """Compile a configuration (validated again here, which is cheap and idempotent)."""
        config = validate_config(config)
        top_level = config.get("originRequest")
        rules = []
        for index, raw in enumerate(config["ingress"]):
            path = raw.get("path", "")
            rules.append(
                Rule(
                    index=index,
                    hostname=raw.get("hostname", ""),
                    path=path,
                    service=parse_service(raw["service"]),
                    origin_request=resolve_origin_request(raw.get("originRequest"), top_level),
                    path_regex=compile_path(path) if path else None,
                )
            )
        return cls(tuple(rules), resolve_origin_request(None, top_level), config.get("warp-routing"))

    def _candidates(self, host: str) -> tuple[int, ...]:
        cached = self._candidates_by_host.get(host)
        if cached is not None:
            return cached
        lists = []
        exact = self._exact.get(host)
        if exact:
            lists.append(exact)
        if self._wildcard:
            dot = host.find(".", 1)  # a wildcard needs at least one character before its zone
            while dot >= 0:
                wildcard = self._wildcard.get(host[dot:])
                if wildcard:
                    lists.append(wildcard)
                dot = host.find(".", dot + 1)
        if lists:
            lists.append(self._any_host)
            candidates = tuple(sorted(index for indexes in lists for index in indexes))
        else:
            candidates = self._any_host
        if len(self._candidates_by_host) >= self.CACHE_SIZE:
            self._candidates_by_host.clear()
        self._candidates_by_host[host] = candidates
        return candidates

    def match(self, host: str, path: str) -> tuple[int, Rule]:
        """The first rule matching a request, as (index, rule).

        host: the request's Host, possibly with a port. path: the request target as sent (percent-encoded; a query
        string is ignored); it is decoded before the regex runs, as cloudflared matches Go's decoded URL.Path.
        The last rule is a catch-all, so there is always a match.
        """
        host = canonical_host(host)
        path = _request_path(path)
        rules = self.rules
        for index in self._candidates(host):
            regex = rules[index].path_regex
            if regex is None or regex.search(path) is not None:
                return index, rules[index]
        # Unreachable with a validated configuration; cloudflared also falls back to the last rule.
        return len(rules) - 1, rules[-1]


def public_hostnames(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(hostname, path) of every rule that names a hostname, in rule order, normalised; path is "" when absent.

    A hostname appears once per rule (twice if two rules route paths of it). Wildcards such as `*.example.com` are
    included; the catch-all hostnames "" and "*" are not.
    """
    rules = validate_config(config)["ingress"]
    return [(rule["hostname"], rule.get("path", "")) for rule in rules if rule.get("hostname", "") not in ("", "*")]
