"""Ingress rules: validation (cloudflared's error texts), normalisation, settings resolution and matching.

Over ~600 lines on purpose: it mirrors one module, connector/ingress.py (with its building blocks in
ingress_values.py), one section per section of it, and its table-driven cases read best side by side."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.ingress import (
    DEFAULT_ORIGIN_REQUEST,
    ORIGIN_REQUEST_FIELDS,
    AccessSettings,
    Ingress,
    IngressError,
    OriginRequest,
    Service,
    canonical_host,
    compile_path,
    parse_duration,
    parse_service,
    public_hostnames,
    resolve_origin_request,
    validate_config,
)

CATCH_ALL = {"service": "http_status:404"}


def config(*rules, **top):
    return {"ingress": [*rules, CATCH_ALL], **top}


def rule(hostname="app.example.com", service="http://localhost:8080", **extra):
    return {"hostname": hostname, "service": service, **extra}


def error_of(cfg) -> IngressError:
    with pytest.raises(IngressError) as caught:
        validate_config(cfg)
    return caught.value


# --- structure -----------------------------------------------------------------------------------------------------


class TestStructure:
    @pytest.mark.parametrize("cfg", [{}, {"ingress": []}, {"ingress": None}, {"originRequest": {}}])
    def test_no_rules(self, cfg):
        error = error_of(cfg)
        assert str(error) == "The config file doesn't contain any ingress rules"
        assert error.field == "config.ingress"

    def test_error_is_a_value_error(self):
        assert issubclass(IngressError, ValueError)

    @pytest.mark.parametrize("cfg", [None, [], "ingress", 3])
    def test_config_must_be_an_object(self, cfg):
        assert error_of(cfg).field == "config"

    def test_ingress_must_be_a_list(self):
        error = error_of({"ingress": {"service": "http://x"}})
        assert error.field == "config.ingress"
        assert "list" in str(error)

    def test_rule_must_be_an_object(self):
        error = error_of({"ingress": ["http://x"]})
        assert error.field == "config.ingress[0]"
        assert str(error) == "Ingress rule #1 must be an object"

    def test_unknown_top_level_key(self):
        error = error_of({"ingress": [CATCH_ALL], "tunnel": "x"})
        assert error.field == "config.tunnel"
        assert '"tunnel"' in str(error)

    def test_unknown_rule_key(self):
        error = error_of(config(rule(rewrite="/x")))
        assert error.field == "config.ingress[0].rewrite"
        assert str(error) == (
            'Ingress rule #1 has an unknown key "rewrite"; '
            "the allowed keys are hostname, path, service and originRequest"
        )

    @pytest.mark.parametrize("key", ["hostname", "path", "service"])
    def test_rule_strings(self, key):
        error = error_of(config(rule(**{key: 42})))
        assert error.field == f"config.ingress[0].{key}"
        assert str(error) == f"{key} must be a string"

    def test_service_required(self):
        for bad in ({"hostname": "a.example.com"}, {"hostname": "a.example.com", "service": ""}):
            error = error_of(config(bad))
            assert error.field == "config.ingress[0].service"
            assert str(error).startswith("Rule #1 has no service")

    def test_nulls_mean_not_set(self):
        # What the official SDK sends back for a catch-all (`hostname=None`) and unset settings.
        cfg = {
            "ingress": [{"hostname": None, "path": None, "service": "http_status:404", "originRequest": None}],
            "originRequest": {"connectTimeout": None, "access": {"required": True, "teamName": None, "audTag": None}},
            "warp-routing": None,
        }
        assert validate_config(cfg) == {
            "ingress": [{"service": "http_status:404"}],
            "originRequest": {"access": {"required": True}},
        }

    def test_field_points_at_the_right_rule(self):
        cfg = {"ingress": [rule("a.example.com"), rule("b.example.com:8080"), CATCH_ALL]}
        assert error_of(cfg).field == "config.ingress[1].hostname"

    def test_types_of_every_rule_are_checked_before_rules_are_validated(self):
        # cloudflared decodes the whole document before validating: a type error in rule 2 wins over rule 1's port.
        cfg = {"ingress": [rule("a.example.com:80"), rule(hostname=7), CATCH_ALL]}
        assert error_of(cfg).field == "config.ingress[1].hostname"

    def test_returns_a_copy_and_is_idempotent(self):
        cfg = config(rule("App.Example.COM", originRequest={"tlsTimeout": "5s", "access": {"audTag": ["x"]}}))
        out = validate_config(cfg)
        assert cfg["ingress"][0]["hostname"] == "App.Example.COM"
        assert (
            out["ingress"][0]["originRequest"]["access"]["audTag"]
            is not cfg["ingress"][0]["originRequest"]["access"]["audTag"]
        )
        assert validate_config(out) == out

    def test_defaults_are_not_filled_in_and_order_is_kept(self):
        cfg = {"originRequest": {"noTLSVerify": False}, "ingress": [rule(path="^/a"), CATCH_ALL]}
        out = validate_config(cfg)
        assert list(out) == ["originRequest", "ingress"]
        assert out["originRequest"] == {"noTLSVerify": False}
        assert out["ingress"][0] == {"hostname": "app.example.com", "service": "http://localhost:8080", "path": "^/a"}


# --- hostnames -----------------------------------------------------------------------------------------------------


class TestHostname:
    @pytest.mark.parametrize("hostname", ["a.example.com:8080", "a.example.com:", "[::1]:80", "*.example.com:443"])
    def test_port(self, hostname):
        error = error_of(config(rule(hostname)))
        assert str(error) == "Hostname cannot contain a port"
        assert error.field == "config.ingress[0].hostname"

    @pytest.mark.parametrize("hostname", ["a.*.example.com", "*.*.example.com", "a*.example.com", "*example.com", "**"])
    def test_bad_wildcard(self, hostname):
        error = error_of(config(rule(hostname)))
        assert str(error) == (
            'Hostname patterns can have at most one wildcard character ("*") and it can only be used for '
            'subdomains, e.g. "*.example.com"'
        )
        assert error.field == "config.ingress[0].hostname"

    @pytest.mark.parametrize(
        ("hostname", "reason"),
        [
            ("a_b.example.com", 'the label "a_b" must be 1 to 63 letters, digits or hyphens'),
            ("-a.example.com", 'the label "-a"'),
            ("a-.example.com", 'the label "a-"'),
            ("a..example.com", "it has an empty label"),
            ("example.com.", "it must not end with a dot"),
            ("a b.example.com", 'the label "a b"'),
            ("a/b.example.com", 'the label "a/b"'),
            ("[::1]", 'the label "[::1]"'),
            ("x" * 64 + ".example.com", 'the label "' + "x" * 64),
            (".".join(["a" * 63] * 4), "it is longer than 253 characters"),
            ("caf\u00e9\u2603.example.com", "is not allowed in a hostname"),
            ("\u0301a.example.com", "cannot start with a combining mark"),
            ("*.", "it has an empty label"),
        ],
    )
    def test_not_a_dns_name(self, hostname, reason):
        error = error_of(config(rule(hostname)))
        assert str(error).startswith(f'"{hostname}" is not a valid hostname: ')
        assert reason in str(error)
        assert error.field == "config.ingress[0].hostname"

    @pytest.mark.parametrize(
        ("written", "normalised"),
        [
            ("App.Example.COM", "app.example.com"),
            ("*.Example.com", "*.example.com"),
            ("b\u00fccher.example", "xn--bcher-kva.example"),
            ("B\u00dcCHER.example", "xn--bcher-kva.example"),
            ("*.b\u00fccher.de", "*.xn--bcher-kva.de"),
            ("xn--bcher-kva.de", "xn--bcher-kva.de"),
            ("XN--BCHER-KVA.de", "xn--bcher-kva.de"),
            # UTS #46 non-transitional (browsers, Go's idna.Lookup): sharp s is kept, not mapped to "ss".
            ("stra\u00dfe.de", "xn--strae-oqa.de"),
            # Fullwidth letters and the ideographic full stop are mapped.
            ("\uff41\uff50\uff50\u3002example.com", "app.example.com"),
            ("localhost", "localhost"),
            ("10.0.0.1", "10.0.0.1"),
        ],
    )
    def test_normalised(self, written, normalised):
        assert validate_config(config(rule(written)))["ingress"][0]["hostname"] == normalised

    def test_missing_or_empty_hostname_is_kept_as_written(self):
        cfg = {"ingress": [{"hostname": "", "path": "^/a", "service": "http://x"}, {"hostname": "*", **CATCH_ALL}]}
        assert validate_config(cfg)["ingress"] == cfg["ingress"]
        assert validate_config({"ingress": [CATCH_ALL]})["ingress"] == [CATCH_ALL]


class TestCatchAll:
    @pytest.mark.parametrize(
        ("last", "field"),
        [
            ({"hostname": "a.example.com", "service": "http://x"}, "config.ingress[1].hostname"),
            ({"hostname": "*.example.com", "service": "http://x"}, "config.ingress[1].hostname"),
            ({"path": "^/", "service": "http://x"}, "config.ingress[1].path"),
            ({"hostname": "*", "path": "^/", "service": "http://x"}, "config.ingress[1].path"),
        ],
    )
    def test_last_rule_must_match_everything(self, last, field):
        error = error_of({"ingress": [rule(), last]})
        assert str(error) == (
            "The last ingress rule must match all URLs (i.e. it should not have a hostname or path filter)"
        )
        assert error.field == field

    @pytest.mark.parametrize(
        "last", [{}, {"hostname": ""}, {"hostname": "*"}, {"path": ""}, {"hostname": "*", "path": ""}]
    )
    def test_catch_all_forms(self, last):
        validate_config({"ingress": [rule(), {**last, "service": "http_status:404"}]})

    @pytest.mark.parametrize(("hostname", "shown"), [(None, ""), ("", ""), ("*", "*")])
    def test_catch_all_before_the_last_rule(self, hostname, shown):
        early = {"service": "http://x"} if hostname is None else {"hostname": hostname, "service": "http://x"}
        error = error_of({"ingress": [rule(), early, rule("b.example.com"), CATCH_ALL]})
        assert str(error) == (
            f"Rule #2 is matching the hostname '{shown}', but this will match every hostname, meaning the rules "
            "which follow it will never be triggered."
        )
        assert error.field == "config.ingress[1].hostname"

    def test_any_host_with_a_path_is_not_a_catch_all(self):
        validate_config(config({"hostname": "*", "path": "^/api", "service": "http://x"}, {"path": "^/b", **CATCH_ALL}))


# --- paths ---------------------------------------------------------------------------------------------------------


class TestPath:
    @pytest.mark.parametrize("path", ["(", "[a-", "a**", "(?P<x>a)(?P<x>b)", r"\p", "(?<name>a)"])
    def test_invalid_regex(self, path):
        error = error_of(config(rule(path=path)))
        assert str(error).startswith("Rule #1 has an invalid regex")
        assert error.field == "config.ingress[0].path"

    @pytest.mark.parametrize(
        ("path", "reason"),
        [
            (r"(a)\1", "backreferences"),
            (r"(?P<x>a)(?P=x)", "backreferences"),
            ("^/a(?=b)", "lookahead and lookbehind"),
            ("^/a(?!b)", "lookahead and lookbehind"),
            ("(?<=a)b", "lookahead and lookbehind"),
            ("(?<!a)b", "lookahead and lookbehind"),
            ("x(?:y(?=z))*", "lookahead and lookbehind"),  # nested
            ("(a)?(?(1)b|c)", "conditional groups"),
        ],
    )
    def test_constructs_re2_refuses(self, path, reason):
        error = error_of(config(rule(hostname="a.example.com"), rule("b.example.com", path=path)))
        assert str(error).startswith("Rule #2 has an invalid regex: ")
        assert reason in str(error)
        assert error.field == "config.ingress[1].path"

    @pytest.mark.skipif(sys.version_info < (3, 11), reason="atomic groups and possessive quantifiers are Python 3.11+")
    @pytest.mark.parametrize("path", ["(?>a)", "a*+", "a++", "a?+", "a{1,2}+"])
    def test_python_311_constructs_re2_refuses(self, path):
        assert "not supported (Go RE2 syntax)" in str(error_of(config(rule(path=path))))

    @pytest.mark.parametrize("path", [r"^/api/v[0-9]+/", r"\.(png|jpe?g)$", "(?i)^/admin", "(?P<x>a)b", "^/$", "a|b"])
    def test_valid(self, path):
        assert validate_config(config(rule(path=path)))["ingress"][0]["path"] == path

    def test_shorthand_classes_are_ascii_as_in_re2(self):
        assert compile_path(r"^/\w+$").search("/caf\u00e9") is None
        assert compile_path(r"^/\d$").search("/\u0663") is None  # ARABIC-INDIC DIGIT THREE

    def test_compile_path_raises_value_error(self):
        with pytest.raises(ValueError):
            compile_path("(")


# --- services ------------------------------------------------------------------------------------------------------


class TestService:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("http://origin:8080", Service("http", "http://origin:8080", "http://origin:8080", "origin", 8080)),
            ("https://origin.lan", Service("https", "https://origin.lan", "https://origin.lan", "origin.lan", 443)),
            ("http://10.0.0.5", Service("http", "http://10.0.0.5", "http://10.0.0.5", "10.0.0.5", 80)),
            ("ws://localhost:3000", Service("http", "ws://localhost:3000", "http://localhost:3000", "localhost", 3000)),
            ("wss://localhost", Service("https", "wss://localhost", "https://localhost", "localhost", 443)),
            ("http://[::1]:8080", Service("http", "http://[::1]:8080", "http://[::1]:8080", "::1", 8080)),
            ("HTTP://LocalHost:80", Service("http", "HTTP://LocalHost:80", "http://LocalHost:80", "localhost", 80)),
            ("unix:/run/app.sock", Service("unix", "unix:/run/app.sock", path="/run/app.sock")),
            ("unix+tls:/run/app.sock", Service("unix+tls", "unix+tls:/run/app.sock", path="/run/app.sock")),
            ("http_status:404", Service("http_status", "http_status:404", status=404)),
            ("http_status:100", Service("http_status", "http_status:100", status=100)),
            ("http_status:999", Service("http_status", "http_status:999", status=999)),
            ("http_status:+200", Service("http_status", "http_status:+200", status=200)),
            ("hello_world", Service("hello_world", "hello_world")),
            ("hello-world", Service("hello_world", "hello-world")),
        ],
    )  # fmt: skip
    def test_parsed(self, raw, expected):
        assert parse_service(raw) == expected
        assert validate_config(config(rule(service=raw)))["ingress"][0]["service"] == raw

    @pytest.mark.parametrize(
        "raw", ["localhost:8000", "127.0.0.1:8000", "http://", "http://:8080", "//localhost:80", "x"]
    )
    def test_needs_scheme_and_host(self, raw):
        error = error_of(config(rule(service=raw)))
        assert str(error) == f"{raw} is an invalid address, please make sure it has a scheme and a hostname"
        assert error.field == "config.ingress[0].service"

    @pytest.mark.parametrize("raw", ["http://localhost:8080/", "http://localhost/api", "https://x:1/a/b"])
    def test_no_path(self, raw):
        assert str(error_of(config(rule(service=raw)))) == (
            f"{raw} is an invalid address, ingress rules don't support proxying to a different path on the origin "
            "service. The path will be the same as the eyeball request's path"
        )

    @pytest.mark.parametrize("raw", ["http_status:abc", "http_status:", "http_status:4o4", "http_status: 404"])
    def test_status_not_an_integer(self, raw):
        error = error_of(config(rule(service=raw)))
        assert str(error).startswith("invalid HTTP status code")
        assert error.field == "config.ingress[0].service"

    def test_status_not_an_integer_text_is_gos(self):
        assert str(error_of(config(rule(service="http_status:abc")))) == (
            'invalid HTTP status code: strconv.Atoi: parsing "abc": invalid syntax'
        )

    @pytest.mark.parametrize("code", [0, 99, 1000, -1])
    def test_status_out_of_range(self, code):
        assert str(error_of(config(rule(service=f"http_status:{code}")))) == f"invalid HTTP status code: {code}"

    @pytest.mark.parametrize(
        "raw", ["tcp://localhost:7864", "ssh://localhost:22", "rdp://host", "smb://host", "ftp://h"]
    )
    def test_stream_services_are_not_supported_yet(self, raw):
        message = str(error_of(config(rule(service=raw))))
        assert "not supported by this connector yet" in message
        assert raw in message

    @pytest.mark.parametrize("raw", ["bastion", "socks-proxy"])
    def test_bastion_and_socks_are_not_supported_yet(self, raw):
        assert str(error_of(config(rule(service=raw)))).startswith(f"The {raw} service is not supported")

    @pytest.mark.parametrize(
        ("raw", "reason"),
        [
            ("http://x:99999", "the port must be a number between 1 and 65535"),
            ("http://x:0", "the port must be a number between 1 and 65535"),
            ("http://x:abc", "the port must be a number between 1 and 65535"),
            ("http://x?a=1", "query string"),
            ("http://x#a", "fragment"),
            ("http://user:pw@x", "credentials"),
            ("unix:", "missing the path of the unix socket"),
            ("unix+tls:", "missing the path of the unix socket"),
            (" http://x", "spaces or control characters"),
            ("http://lo\ncalhost", "spaces or control characters"),
            ("http://[::1", "please make sure it has a scheme and a hostname"),
        ],
    )
    def test_other_refusals(self, raw, reason):
        error = error_of(config(rule(service=raw)))
        assert reason in str(error)
        assert error.field == "config.ingress[0].service"

    def test_service_is_checked_before_the_hostname(self):
        # cloudflared's order inside one rule: service, then hostname, then path.
        error = error_of(config(rule("a.example.com:1", service="localhost:1", path="(")))
        assert error.field == "config.ingress[0].service"


# --- originRequest -------------------------------------------------------------------------------------------------

DURATIONS = ["connectTimeout", "tlsTimeout", "tcpKeepAlive", "keepAliveTimeout"]
BOOLEANS = ["noHappyEyeballs", "noTLSVerify", "disableChunkedEncoding", "http2Origin", "matchSNItoHost"]
STRINGS = ["httpHostHeader", "originServerName", "caPool"]


def origin_error(settings_) -> IngressError:
    return error_of(config(rule(originRequest=settings_)))


def both_levels(settings_):
    """The same originRequest validated at the top level and inside a rule."""
    top = validate_config(config(originRequest=settings_))["originRequest"]
    ruled = validate_config(config(rule(originRequest=settings_)))["ingress"][0]["originRequest"]
    assert top == ruled
    return top


class TestOriginRequest:
    @pytest.mark.parametrize("key", DURATIONS)
    @pytest.mark.parametrize(
        ("value", "seconds"),
        [(0, 0), (30, 30), (86400, 86400), ("30s", 30), ("1m30s", 90), ("2h", 7200), ("1.5m", 90), ("0", 0),
         ("1500ms", None), ("+5s", 5), ("90000ms", 90), (".5m", 30), ("1h1m1s", 3661)],
    )  # fmt: skip
    def test_durations(self, key, value, seconds):
        if seconds is None:
            assert str(origin_error({key: value})) == f'{key} must be a whole number of seconds, not "{value}"'
        else:
            assert both_levels({key: value}) == {key: seconds}

    @pytest.mark.parametrize("key", DURATIONS)
    @pytest.mark.parametrize("value", [True, False, 1.5, 30.0, "30", "", "s", "abc", "5d", "1m30", [30], {}])
    def test_bad_durations(self, key, value):
        error = origin_error({key: value})
        assert error.field == f"config.ingress[0].originRequest.{key}"
        assert str(error).startswith(f'{key} must be a whole number of seconds or a duration such as "30s"')

    @pytest.mark.parametrize("key", DURATIONS)
    def test_negative_and_huge_durations(self, key):
        assert str(origin_error({key: -1})) == f"{key} must not be negative"
        assert str(origin_error({key: "-1s"})) == f"{key} must not be negative"
        assert "must be at most" in str(origin_error({key: 2**63}))

    def test_keep_alive_connections(self):
        assert both_levels({"keepAliveConnections": 0}) == {"keepAliveConnections": 0}
        assert both_levels({"keepAliveConnections": 512}) == {"keepAliveConnections": 512}
        for bad in (-1, True, 1.0, "100", 2**31):
            error = origin_error({"keepAliveConnections": bad})
            assert str(error).startswith("keepAliveConnections must be a whole number between 0 and")
            assert error.field == "config.ingress[0].originRequest.keepAliveConnections"

    @pytest.mark.parametrize("key", BOOLEANS)
    def test_booleans(self, key):
        assert both_levels({key: True}) == {key: True}
        assert both_levels({key: False}) == {key: False}
        for bad in (1, 0, "true", "false", [], {}):
            error = origin_error({key: bad})
            assert str(error) == f"{key} must be true or false"
            assert error.field == f"config.ingress[0].originRequest.{key}"

    @pytest.mark.parametrize("key", STRINGS)
    def test_strings(self, key):
        assert both_levels({key: ""}) == {key: ""}
        assert both_levels({key: "origin.internal"}) == {key: "origin.internal"}
        for bad in (1, True, ["a"], {}):
            assert str(origin_error({key: bad})) == f"{key} must be a string"
        assert str(origin_error({key: "a\r\nX-Injected: 1"})) == f"{key} cannot contain control characters"

    def test_proxy_type(self):
        assert both_levels({"proxyType": ""}) == {"proxyType": ""}
        assert both_levels({"proxyType": "socks"}) == {"proxyType": "socks"}
        for bad in ("http", "SOCKS", 1, False):
            assert str(origin_error({"proxyType": bad})) == 'proxyType must be "" or "socks"'

    def test_access(self):
        access = {"required": True, "teamName": "alpha", "audTag": ["aud1", "aud2"]}
        assert both_levels({"access": access}) == {"access": access}
        # An initial setup may force Access before configuring the rest (cloudflared allows it).
        assert both_levels({"access": {"required": True}}) == {"access": {"required": True}}
        # Not required: no check.
        assert both_levels({"access": {"audTag": ["a"]}}) == {"access": {"audTag": ["a"]}}

    @pytest.mark.parametrize("where", ["top", "rule"])
    @pytest.mark.parametrize("team", [None, ""])
    def test_access_team_name_required_with_aud_tags(self, where, team):
        access = {"required": True, "audTag": ["aud"], **({} if team is None else {"teamName": team})}
        if where == "top":
            error = error_of(config(originRequest={"access": access}))
            assert error.field == "config.originRequest.access.teamName"
        else:
            error = error_of(config(rule(originRequest={"access": access})))
            assert error.field == "config.ingress[0].originRequest.access.teamName"
        assert str(error) == "access.TeamName cannot be blank when access.audTags are present"

    @pytest.mark.parametrize(
        ("access", "field", "message"),
        [
            ("yes", "access", "access must be an object"),
            ({"required": "true"}, "access.required", "access.required must be true or false"),
            ({"required": 1}, "access.required", "access.required must be true or false"),
            ({"teamName": 3}, "access.teamName", "access.teamName must be a string"),
            ({"audTag": "aud"}, "access.audTag", "access.audTag must be a list of strings"),
            ({"audTag": [1]}, "access.audTag", "access.audTag must be a list of strings"),
            ({"environment": "fed"}, "access.environment", 'Unknown access setting "environment"'),
        ],
    )
    def test_bad_access(self, access, field, message):
        error = origin_error({"access": access})
        assert error.field == f"config.ingress[0].originRequest.{field}"
        assert str(error).startswith(message)

    def test_unknown_key(self):
        error = origin_error({"noTlsVerify": True})
        assert str(error) == 'Unknown originRequest setting "noTlsVerify"'
        assert error.field == "config.ingress[0].originRequest.noTlsVerify"
        assert error_of(config(originRequest={"timeout": 1})).field == "config.originRequest.timeout"

    @pytest.mark.parametrize("key", ["bastionMode", "proxyAddress", "proxyPort", "ipRules"])
    def test_cloudflared_keys_this_connector_cannot_honour(self, key):
        error = origin_error({key: None})
        assert str(error).startswith(f"originRequest.{key} is not supported by this connector yet")
        assert error.field == f"config.ingress[0].originRequest.{key}"

    def test_must_be_an_object(self):
        assert error_of(config(originRequest=[])).field == "config.originRequest"
        assert str(origin_error("x")) == "originRequest must be an object"

    def test_warp_routing(self):
        cfg = config(**{"warp-routing": {"enabled": True, "connectTimeout": "5s", "maxActiveFlows": 10}})
        assert validate_config(cfg)["warp-routing"] == {"enabled": True, "connectTimeout": 5, "maxActiveFlows": 10}
        assert error_of(config(**{"warp-routing": {"enabled": "yes"}})).field == "config.warp-routing.enabled"
        assert error_of(config(**{"warp-routing": {"on": True}})).field == "config.warp-routing.on"
        assert error_of(config(**{"warp-routing": True})).field == "config.warp-routing"


class TestParseDuration:
    def test_values(self):
        assert parse_duration(45) == 45
        assert parse_duration("1h30m") == 5400
        assert parse_duration("1000000000ns") == 1
        assert parse_duration("1000000us") == 1
        assert parse_duration("1000000\u00b5s") == 1
        assert parse_duration("-0s") == 0

    @pytest.mark.parametrize("bad", ["1", "1.5s", "1ms", "-5s", "1d", "", "1 s", True, None, 2.0])
    def test_refused(self, bad):
        with pytest.raises(ValueError):
            parse_duration(bad)


# --- settings resolution -------------------------------------------------------------------------------------------


class TestResolveOriginRequest:
    def test_defaults(self):
        resolved = resolve_origin_request()
        assert resolved == OriginRequest()
        assert resolved == OriginRequest(
            connect_timeout=30,
            tls_timeout=10,
            tcp_keep_alive=30,
            no_happy_eyeballs=False,
            keep_alive_connections=100,
            keep_alive_timeout=90,
            http_host_header="",
            origin_server_name="",
            match_sni_to_host=False,
            ca_pool="",
            no_tls_verify=False,
            disable_chunked_encoding=False,
            http2_origin=False,
            proxy_type="",
            access=None,
        )
        assert {ORIGIN_REQUEST_FIELDS[key]: value for key, value in DEFAULT_ORIGIN_REQUEST.items()} == (
            dataclasses.asdict(resolved)
        )
        assert [f.name for f in dataclasses.fields(OriginRequest)] == list(ORIGIN_REQUEST_FIELDS.values())

    def test_rule_over_top_level_over_defaults(self):
        top = {"connectTimeout": 5, "noTLSVerify": True, "httpHostHeader": "top.internal"}
        ruled = {"connectTimeout": "1m", "httpHostHeader": ""}
        resolved = resolve_origin_request(ruled, top)
        assert resolved.connect_timeout == 60  # rule
        assert resolved.http_host_header == ""  # rule, even though falsy
        assert resolved.no_tls_verify is True  # top level
        assert resolved.tls_timeout == 10  # default

    def test_false_in_a_rule_overrides_true_at_the_top(self):
        assert resolve_origin_request({"noTLSVerify": False}, {"noTLSVerify": True}).no_tls_verify is False

    def test_access_is_taken_whole_from_one_level(self):
        top = {"access": {"required": True, "teamName": "alpha", "audTag": ["a"]}}
        assert resolve_origin_request(None, top).access == AccessSettings(True, "alpha", ("a",))
        resolved = resolve_origin_request({"access": {"audTag": ["b"]}}, top)
        assert resolved.access == AccessSettings(required=False, team_name="", aud_tags=("b",))

    def test_frozen(self):
        with pytest.raises(AttributeError):
            resolve_origin_request().connect_timeout = 1  # type: ignore[misc]

    def test_validates_its_input(self):
        with pytest.raises(IngressError):
            resolve_origin_request({"connectTimeout": "soon"})

    def test_compiled_rules_carry_their_settings(self):
        ingress = Ingress.from_config(
            config(
                rule("a.example.com", originRequest={"tlsTimeout": 3}),
                rule("b.example.com"),
                originRequest={"tlsTimeout": 7, "caPool": "/etc/ca.pem"},
            )
        )
        assert [r.origin_request.tls_timeout for r in ingress.rules] == [3, 7, 7]
        assert {r.origin_request.ca_pool for r in ingress.rules} == {"/etc/ca.pem"}
        assert ingress.defaults == OriginRequest(tls_timeout=7, ca_pool="/etc/ca.pem")


# --- matching ------------------------------------------------------------------------------------------------------


def compiled(*rules) -> Ingress:
    return Ingress.from_config(config(*rules))


class TestMatch:
    def test_first_match_wins_when_exact_and_wildcard_both_match(self):
        wildcard_first = compiled(rule("*.example.com", "http://wild"), rule("app.example.com", "http://exact"))
        assert wildcard_first.match("app.example.com", "/")[0] == 0
        exact_first = compiled(rule("app.example.com", "http://exact"), rule("*.example.com", "http://wild"))
        assert exact_first.match("app.example.com", "/")[0] == 0
        assert exact_first.match("other.example.com", "/")[0] == 1

    def test_first_match_wins_with_any_host_path_rules(self):
        ingress = compiled({"hostname": "*", "path": "^/health", "service": "http://h"}, rule("app.example.com"))
        assert ingress.match("app.example.com", "/health")[0] == 0
        assert ingress.match("app.example.com", "/")[0] == 1

    def test_path_rule_before_exact_rule_of_the_same_host(self):
        ingress = compiled(rule(path="^/api"), rule())
        assert ingress.match("app.example.com", "/api/x")[0] == 0
        assert ingress.match("app.example.com", "/web")[0] == 1

    def test_catch_all(self):
        ingress = compiled(rule())
        index, matched = ingress.match("unknown.example.org", "/")
        assert index == 1
        assert matched.service == Service("http_status", "http_status:404", status=404)
        assert ingress.match("", "/")[0] == 1

    @pytest.mark.parametrize(
        "host",
        ["app.example.com:443", "app.example.com:8080", "APP.Example.Com", "app.example.com.", "App.Example.com.:80"],
    )
    def test_host_forms(self, host):
        assert compiled(rule()).match(host, "/")[0] == 0

    def test_ipv6_literal_hosts(self):
        ingress = compiled(rule())
        assert ingress.match("[::1]:8080", "/")[0] == 1
        assert ingress.match("::1", "/")[0] == 1
        assert canonical_host("[::1]:8080") == "::1"
        assert canonical_host("::1") == "::1"
        assert canonical_host("[::1]") == "[::1]"  # as Go's net.SplitHostPort: no port, left alone

    def test_wildcard_depth_and_apex(self):
        ingress = compiled(rule("*.example.com"))
        assert ingress.match("a.example.com", "/")[0] == 0
        assert ingress.match("a.b.example.com", "/")[0] == 0
        assert ingress.match("A.B.Example.COM:443", "/")[0] == 0
        assert ingress.match("example.com", "/")[0] == 1  # not the apex
        assert ingress.match("badexample.com", "/")[0] == 1
        assert ingress.match(".example.com", "/")[0] == 1
        assert ingress.match("example.com.evil.org", "/")[0] == 1

    def test_path_regex_is_unanchored_and_runs_on_the_path_only(self):
        ingress = compiled(rule(path="api"), rule(path=r"\.png$"))
        assert ingress.match("app.example.com", "/v1/api/users")[0] == 0
        assert ingress.match("app.example.com", "/img/logo.png")[0] == 1
        assert ingress.match("app.example.com", "/img/logo.png?size=2")[0] == 1
        assert ingress.match("app.example.com", "/img/logo.png?x=.png")[0] == 1
        assert ingress.match("app.example.com", "/web?q=api")[0] == 2  # the query is not matched
        assert ingress.match("app.example.com", "/web?q=.png")[0] == 2

    def test_anchored_path(self):
        ingress = compiled(rule(path="^/admin$"))
        assert ingress.match("app.example.com", "/admin")[0] == 0
        assert ingress.match("app.example.com", "/admin/")[0] == 1
        assert ingress.match("app.example.com", "/x/admin")[0] == 1

    def test_path_is_percent_decoded_like_go_url_path(self):
        ingress = compiled(rule(path="^/admin"))
        assert ingress.match("app.example.com", "/%61dmin")[0] == 0
        assert ingress.match("app.example.com", "/admin%3Fx")[0] == 0

    def test_unicode_host(self):
        ingress = compiled(rule("b\u00fccher.example"), rule("*.stra\u00dfe.de"))
        assert ingress.match("xn--bcher-kva.example", "/")[0] == 0
        assert ingress.match("b\u00fccher.example", "/")[0] == 0
        assert ingress.match("B\u00dcCHER.example:443", "/")[0] == 0
        assert ingress.match("www.xn--strae-oqa.de", "/")[0] == 1
        assert ingress.match("www.stra\u00dfe.de", "/")[0] == 1
        assert ingress.match("www.strasse.de", "/")[0] == 2

    def test_rules_are_compiled_once(self):
        ingress = compiled(rule(path="^/a"), rule("*.example.com"))
        first = ingress.rules[0]
        assert first.path_regex is not None and first.path_regex.pattern == "^/a"
        assert first.service == Service("http", "http://localhost:8080", "http://localhost:8080", "localhost", 8080)
        assert ingress.match("app.example.com", "/a")[1] is first
        assert [r.index for r in ingress.rules] == [0, 1, 2]

    def test_host_cache_is_bounded(self):
        ingress = compiled(rule("*.example.com"))
        for number in range(Ingress.CACHE_SIZE + 10):
            assert ingress.match(f"h{number}.example.com", "/")[0] == 0
        assert len(ingress._candidates_by_host) <= Ingress.CACHE_SIZE

    def test_from_config_validates(self):
        with pytest.raises(IngressError):
            Ingress.from_config({"ingress": [rule()]})

    def test_warp_routing_is_kept(self):
        assert compiled().warp_routing == {}
        ingress = Ingress.from_config(config(**{"warp-routing": {"enabled": True}}))
        assert ingress.warp_routing == {"enabled": True}


class TestPublicHostnames:
    def test_lists_rules_with_a_hostname(self):
        cfg = config(
            rule("App.Example.com"),
            rule("app.example.com", path="^/api"),
            rule("*.b\u00fccher.de"),
            {"hostname": "*", "path": "^/health", "service": "http://h"},
            {"path": "^/x", "service": "http://h"},
        )
        assert public_hostnames(cfg) == [
            ("app.example.com", ""),
            ("app.example.com", "^/api"),
            ("*.xn--bcher-kva.de", ""),
        ]

    def test_validates(self):
        with pytest.raises(IngressError):
            public_hostnames({"ingress": []})


# --- property: the indexed matcher agrees with a plain top-to-bottom scan --------------------------------------------


def naive_match(cfg: dict, host: str, path: str) -> int:
    """cloudflared's FindMatchingRule, written the obvious way."""
    host = canonical_host(host)
    path = urllib.parse.unquote(path.split("?", 1)[0])
    for index, raw in enumerate(cfg["ingress"]):
        hostname = raw.get("hostname", "")
        if hostname in ("", "*"):
            host_matches = True
        elif hostname.startswith("*."):
            host_matches = host.endswith(hostname[1:]) and len(host) > len(hostname) - 1
        else:
            host_matches = host == hostname
        if host_matches and (not raw.get("path") or re.search(raw["path"], path, re.ASCII)):
            return index
    raise AssertionError("the last rule is a catch-all")


LABELS = st.sampled_from(["a", "b", "c", "example", "xn--bcher-kva", "b\u00fccher"])
NAMES = st.lists(LABELS, min_size=1, max_size=3).map(".".join)
RULE_HOSTS = st.one_of(st.just(""), st.just("*"), NAMES, NAMES.map(lambda name: "*." + name))
PATHS = st.sampled_from(["", "^/api", "api", r"\.png$", "^/$", "^/a/b", "b"])
REQUEST_PATHS = st.sampled_from(["/", "/api", "/api/x", "/x/api", "/logo.png", "/a/b", "/a%2Fb", "/?q=api", "/x.png?y"])


@st.composite
def rule_sets(draw):
    rules = []
    for _ in range(draw(st.integers(0, 10))):
        hostname, path = draw(RULE_HOSTS), draw(PATHS)
        if hostname in ("", "*") and not path:
            continue  # a catch-all can only be last
        raw = {"service": "http://localhost:8080", "hostname": hostname, "path": path}
        rules.append({key: value for key, value in raw.items() if value or draw(st.booleans())})
    rules.append({"service": "http_status:404", **draw(st.sampled_from([{}, {"hostname": "*"}, {"hostname": ""}]))})
    return {"ingress": rules}


@st.composite
def request_hosts(draw):
    host = draw(NAMES)
    host = "".join(char.upper() if draw(st.booleans()) else char for char in host)
    if draw(st.integers(0, 9)) == 0:
        host = "." + host
    if draw(st.booleans()):
        host += "."
    if draw(st.booleans()):
        host += ":" + str(draw(st.integers(1, 65535)))
    return host


@settings(max_examples=400, deadline=None)
@given(cfg=rule_sets(), requests=st.lists(st.tuples(request_hosts(), REQUEST_PATHS), min_size=1, max_size=8))
def test_indexed_matcher_agrees_with_a_linear_scan(cfg, requests):
    ingress = Ingress.from_config(cfg)
    normalised = validate_config(cfg)
    for host, path in requests:
        index, matched = ingress.match(host, path)
        assert index == naive_match(normalised, host, path), (host, path)
        assert matched is ingress.rules[index]


@settings(max_examples=200, deadline=None)
@given(cfg=rule_sets())
def test_validation_is_idempotent(cfg):
    once = validate_config(cfg)
    assert validate_config(once) == once


# --- portability ---------------------------------------------------------------------------------------------------


def test_module_is_standalone():
    """No Django (the connector imports it), and nothing beyond the standard library."""
    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys; import connector.ingress; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'django', 'rest_framework', 'hypothesis'}); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)
