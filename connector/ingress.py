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
  `parse_duration(value) -> int`: the building blocks, for callers that need one piece (they live in
  ingress_values.py with `IngressError` and cloudflared's error texts; import them from here).
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from .ingress_values import (
    ERR_ACCESS_TEAM_NAME,
    ERR_NO_INGRESS_RULES,
    IngressError,
    Service,
    canonical_host,
    compile_path,
    normalise_rule_hostname,
    parse_duration,
    parse_service,
)

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
        hostname = normalise_rule_hostname(rule.get("hostname", ""), index, len(rules), rule.get("path", ""))
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
