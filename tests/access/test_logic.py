"""The policy engine without a database: durations, destinations, every selector, the include / require / exclude
algebra, Cloudflare's evaluation order and precedence, and the most specific application winning."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

import pytest

from access.logic.destinations import DestinationIndex, parse_destination
from access.logic.durations import format_go_duration, parse_go_duration, session_duration
from access.logic.engine import Decision, Outcome, PolicyDef, evaluate, evaluation_order
from access.logic.ipsets import IPSet
from access.logic.rules import (
    Directory,
    RuleError,
    RuleSet,
    Subject,
    parse_rule,
    parse_rules,
    rule_matches,
    uses_identity,
)

# --- durations ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("24h", 86400), ("2h45m", 9900), ("300ms", 0.3), ("1.5h", 5400), ("0", 0), ("0s", 0), ("730h", 730 * 3600)],
)
def test_go_durations_parse(text, seconds):
    assert parse_go_duration(text).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "24", "h", "-1h", "1d", "1h 30m", "1hh", None, 5, "1e3h"])
def test_bad_durations_are_refused_with_a_reason(text):
    with pytest.raises(ValueError, match="duration|negative|unit"):
        parse_go_duration(text)


def test_durations_format_back_to_their_shortest_spelling():
    assert format_go_duration(timedelta(hours=24)) == "24h"
    assert format_go_duration(timedelta(seconds=9900)) == "2h45m"
    assert format_go_duration(timedelta(0)) == "0s"
    assert format_go_duration(timedelta(hours=168)) == "168h"


def test_session_durations_stay_within_a_month_and_the_minimum():
    assert session_duration("730h", field="session_duration") == timedelta(hours=730)
    with pytest.raises(ValueError, match="at most 1 month"):
        session_duration("731h", field="session_duration")
    with pytest.raises(ValueError, match="at least 15m"):
        session_duration("10m", field="session_duration", minimum=timedelta(minutes=15))


# --- destinations ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "host", "path", "covered", "not_covered"),
    [
        ("app.example.com", "app.example.com", "/x/y", [("app.example.com", "/"), ("APP.example.com", "/a")], []),
        ("app.example.com/*", "app.example.com", "/", [("app.example.com", "/anything")], []),
        (
            "app.example.com/alpha/*",
            "app.example.com",
            "/alpha/x",
            [("app.example.com", "/alpha/x/y")],
            [("app.example.com", "/alpha"), ("app.example.com", "/beta/x")],
        ),
        (
            "app.example.com/alpha",
            "app.example.com",
            "/alpha",
            [("app.example.com", "/alpha/x")],
            [("app.example.com", "/alphabet"), ("app.example.com", "/")],
        ),
        (
            "app.example.com/foo*/bar",
            "app.example.com",
            "/food/stuff/bar",
            [("app.example.com", "/foo/bar")],
            [("app.example.com", "/food/bar/baz")],
        ),
        (
            "*.example.com",
            "a.example.com",
            "/",
            [("b.example.com", "/x")],
            [("example.com", "/"), ("a.b.example.com", "/"), ("a.example.org", "/")],
        ),
        (
            "*test.example.com",
            "mytest.example.com",
            "/",
            [("test.example.com", "/")],
            [("tester.example.com", "/"), ("a.test.example.com", "/")],
        ),
    ],
)
def test_destinations_cover_what_cloudflare_covers(uri, host, path, covered, not_covered):
    destination = parse_destination(uri)
    assert destination.covers(host.lower(), path)
    for other_host, other_path in covered:
        assert destination.covers(other_host.lower(), other_path), (other_host, other_path)
    for other_host, other_path in not_covered:
        assert not destination.covers(other_host, other_path), (other_host, other_path)


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("", "hostname"),
        ("example", "not a valid hostname"),
        ("app.*.example.com", "first label"),
        ("**.example.com", "first label"),
        ("app.example.com:8443", "no port"),
        ("app.example.com/a?b=1", "query strings"),
        ("app.example.com/a/**", "one “\\*”"),
        ("app.exa mple.com", "not a valid hostname"),
    ],
)
def test_bad_destinations_are_refused(uri, reason):
    with pytest.raises(ValueError, match=reason):
        parse_destination(uri)


def test_destinations_normalise_case_scheme_and_idn():
    assert parse_destination("https://App.Example.com/Admin").uri == "app.example.com/Admin"
    assert parse_destination("bücher.example.com").host == "xn--bcher-kva.example.com"
    assert parse_destination("app.example.com/*").uri == "app.example.com"


def test_the_most_specific_application_wins():
    index = DestinationIndex.build(
        [
            ([parse_destination("*.example.com")], "wildcard"),
            ([parse_destination("app.example.com")], "host"),
            ([parse_destination("app.example.com/admin")], "admin"),
            ([parse_destination("app.example.com/admin/reports/*")], "reports"),
            ([parse_destination("*.example.com/api")], "wildcard-api"),
        ]
    )
    assert index.match("app.example.com", "/") == "host"
    assert index.match("app.example.com", "/admin/users") == "admin"
    assert index.match("app.example.com", "/admin/reports/1") == "reports"
    assert index.match("other.example.com", "/") == "wildcard"
    assert index.match("other.example.com", "/api/x") == "wildcard-api"
    assert index.match("app.example.com", "/api") == "wildcard-api"  # the longer path beats the exact host
    assert index.match("example.com", "/") is None
    assert index.match("a.b.example.com", "/") is None
    assert index.match("APP.EXAMPLE.COM.", "/") == "host"


# --- rules -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({}, "one selector"),
        ({"email": {"email": "a@b.c"}, "everyone": {}}, "one selector"),
        ({"warp": {}}, "not a supported selector"),
        ({"email": {"address": "a@b.c"}}, "“email” is required"),
        ({"email": {"email": "not-an-email"}}, "not an email"),
        ({"email_domain": {"domain": "not a domain"}}, "not a domain"),
        ({"ip": {"ip": "10.0.0.0/33"}}, "not an IP"),
        ({"geo": {"country_code": "GBR"}}, "two-letter"),
        ({"everyone": []}, "is an object"),
        ("email", "one selector"),
    ],
)
def test_malformed_rules_are_refused_with_a_reason(raw, reason):
    with pytest.raises(RuleError, match=reason):
        parse_rule(raw)


def test_rules_round_trip_in_cloudflares_shapes():
    raw = [
        {"email": {"email": "Ana@Example.com"}},
        {"email_domain": {"domain": "@Example.com"}},
        {"everyone": {}},
        {"ip": {"ip": "10.1.2.3/8"}},
        {"geo": {"country_code": "gb"}},
        {"any_valid_service_token": {}},
    ]
    assert [rule.to_json() for rule in parse_rules(raw, field_name="include")] == [
        {"email": {"email": "ana@example.com"}},
        {"email_domain": {"domain": "example.com"}},
        {"everyone": {}},
        {"ip": {"ip": "10.0.0.0/8"}},
        {"geo": {"country_code": "GB"}},
        {"any_valid_service_token": {}},
    ]
    with pytest.raises(RuleError, match=r"include\[1\]"):
        parse_rules([{"everyone": {}}, {"email": {}}], field_name="include")
    with pytest.raises(RuleError, match="at least one"):
        parse_rules([], field_name="include", required=True)


def _set(include=(), require=(), exclude=()):
    return RuleSet(
        tuple(parse_rules(list(include), field_name="i")),
        tuple(parse_rules(list(require), field_name="r")),
        tuple(parse_rules(list(exclude), field_name="e")),
    )


def _policy(name, decision, precedence, **rules):
    return PolicyDef(id=name, name=name, decision=Decision(decision), precedence=precedence, rules=_set(**rules))


ANA = Subject(email="ana@example.com", login_method="otp", ip=ipaddress.ip_address("203.0.113.7"), country="GB")
DIRECTORY = Directory(
    groups={
        "eng": _set(
            include=[{"email_domain": {"domain": "example.com"}}], exclude=[{"email": {"email": "bo@example.com"}}]
        ),
        "loop": _set(include=[{"group": {"id": "loop"}}]),
    },
    email_lists={"vips": frozenset({"ana@example.com"})},
    ip_lists={"office": IPSet([ipaddress.ip_network("203.0.113.0/24")])},
)


@pytest.mark.parametrize(
    ("rule", "subject", "expected"),
    [
        ({"email": {"email": "ANA@example.com"}}, ANA, True),
        ({"email": {"email": "bo@example.com"}}, ANA, False),
        ({"email_domain": {"domain": "example.com"}}, ANA, True),
        ({"email_domain": {"domain": "ample.com"}}, ANA, False),
        ({"everyone": {}}, ANA, True),
        ({"ip": {"ip": "203.0.113.0/24"}}, ANA, True),
        ({"ip": {"ip": "2001:db8::/32"}}, ANA, False),
        ({"ip": {"ip": "2001:db8::/32"}}, Subject(ip=ipaddress.ip_address("2001:db8::1")), True),
        ({"geo": {"country_code": "GB"}}, ANA, True),
        ({"geo": {"country_code": "FR"}}, ANA, False),
        ({"geo": {"country_code": "GB"}}, Subject(email="ana@example.com"), False),
        ({"login_method": {"id": "otp"}}, ANA, True),
        ({"login_method": {"id": "oidc"}}, ANA, False),
        ({"service_token": {"token_id": "t1"}}, Subject(service_token_id="t1"), True),
        ({"service_token": {"token_id": "t1"}}, Subject(service_token_id="t2"), False),
        ({"any_valid_service_token": {}}, Subject(service_token_id="t2"), True),
        ({"any_valid_service_token": {}}, ANA, False),
        ({"email_list": {"id": "vips"}}, ANA, True),
        ({"email_list": {"id": "vips"}}, Subject(email="bo@example.com"), False),
        ({"email_list": {"id": "missing"}}, ANA, False),
        ({"ip_list": {"id": "office"}}, ANA, True),
        ({"ip_list": {"id": "office"}}, Subject(ip=ipaddress.ip_address("198.51.100.1")), False),
        ({"group": {"id": "eng"}}, ANA, True),
        ({"group": {"id": "eng"}}, Subject(email="bo@example.com"), False),
        ({"group": {"id": "loop"}}, ANA, False),
        ({"group": {"id": "deleted"}}, ANA, False),
    ],
)
def test_every_selector(rule, subject, expected):
    assert rule_matches(parse_rule(rule), subject, DIRECTORY) is expected


def test_include_is_or_require_is_and_exclude_is_not():
    policy = _policy(
        "p",
        "allow",
        1,
        include=[{"email": {"email": "x@other.test"}}, {"email_domain": {"domain": "example.com"}}],
        require=[{"geo": {"country_code": "GB"}}, {"ip": {"ip": "203.0.113.0/24"}}],
        exclude=[{"email": {"email": "bo@example.com"}}],
    )
    assert evaluate([policy], ANA, DIRECTORY).outcome is Outcome.ALLOW
    abroad = Subject(email="ana@example.com", ip=ANA.ip, country="FR")
    assert evaluate([policy], abroad, DIRECTORY).outcome is Outcome.NO_MATCH
    bo = Subject(email="bo@example.com", ip=ANA.ip, country="GB")
    verdict = evaluate([policy], bo, DIRECTORY, explain=True)
    assert verdict.outcome is Outcome.NO_MATCH and "excluded by" in verdict.trace[0].note
    stranger = Subject(email="eve@evil.test", ip=ANA.ip, country="GB")
    assert evaluate([policy], stranger, DIRECTORY, explain=True).trace[0].note == "no include rule matched"


def test_cloudflares_evaluation_order():
    """The docs' example: Allow A, Block B, Service Auth C, Bypass D, Allow E runs as C, D, A, B, E."""
    policies = [
        _policy("A", "allow", 1, include=[{"everyone": {}}]),
        _policy("B", "deny", 2, include=[{"everyone": {}}]),
        _policy("C", "non_identity", 3, include=[{"any_valid_service_token": {}}]),
        _policy("D", "bypass", 4, include=[{"ip": {"ip": "10.0.0.0/8"}}]),
        _policy("E", "allow", 5, include=[{"everyone": {}}]),
    ]
    assert [p.name for p in evaluation_order(policies)] == ["C", "D", "A", "B", "E"]
    ordered = evaluation_order(policies)
    assert evaluate(ordered, Subject(service_token_id="t"), DIRECTORY).policy.name == "C"
    assert evaluate(ordered, Subject(ip=ipaddress.ip_address("10.1.1.1")), DIRECTORY).outcome is Outcome.BYPASS
    assert evaluate(ordered, ANA, DIRECTORY).policy.name == "A"


def test_precedence_decides_and_first_match_wins():
    block_bo = _policy("block bo", "deny", 1, include=[{"email": {"email": "bo@example.com"}}])
    allow_all = _policy("staff", "allow", 2, include=[{"email_domain": {"domain": "example.com"}}])
    ordered = evaluation_order([allow_all, block_bo])
    assert evaluate(ordered, Subject(email="bo@example.com"), DIRECTORY).outcome is Outcome.DENY
    assert evaluate(ordered, ANA, DIRECTORY).outcome is Outcome.ALLOW
    swapped = evaluation_order(
        [PolicyDef(**{**allow_all.__dict__, "precedence": 1}), PolicyDef(**{**block_bo.__dict__, "precedence": 2})]
    )
    assert evaluate(swapped, Subject(email="bo@example.com"), DIRECTORY).outcome is Outcome.ALLOW


def test_deny_by_default_and_login_needed_without_an_identity():
    staff = [_policy("staff", "allow", 1, include=[{"email_domain": {"domain": "example.com"}}])]
    assert evaluate(staff, Subject(email="eve@evil.test"), DIRECTORY).outcome is Outcome.NO_MATCH
    assert evaluate(staff, Subject(ip=ANA.ip), DIRECTORY).outcome is Outcome.NEEDS_LOGIN
    assert evaluate(staff, Subject(service_token_id="t"), DIRECTORY).outcome is Outcome.NO_MATCH
    assert not evaluate([], ANA, DIRECTORY).admitted


def test_the_explainer_names_the_deciding_policy_and_rule():
    policies = evaluation_order(
        [
            _policy("office bypass", "bypass", 1, include=[{"ip": {"ip": "198.51.100.0/24"}}]),
            _policy("staff", "allow", 2, include=[{"email_domain": {"domain": "example.com"}}]),
            _policy("everyone", "allow", 3, include=[{"everyone": {}}]),
        ]
    )
    verdict = evaluate(policies, ANA, DIRECTORY, explain=True)
    assert verdict.policy.name == "staff"
    assert verdict.explain() == "Allow policy “staff” (rule “email ends in @example.com”) decided."
    notes = [trace.note for trace in verdict.trace]
    assert notes == ["no include rule matched", "decided", "matched, but an earlier policy had decided"]


def test_identity_rules_are_found_through_groups_for_bypass():
    assert uses_identity(_set(include=[{"group": {"id": "eng"}}]), DIRECTORY).kind == "email_domain"
    assert uses_identity(_set(include=[{"ip": {"ip": "10.0.0.0/8"}}]), DIRECTORY) is None


def _ipset(*networks):
    return IPSet(ipaddress.ip_network(network, strict=False) for network in networks)


def _in(ipset, address):
    return ipaddress.ip_address(address) in ipset


def test_ip_lists_are_looked_up_by_bisection_at_every_boundary():
    office = _ipset("203.0.113.0/24", "198.51.100.7/32", "2001:db8::/32", "2001:db8:ffff::1/128")
    assert not _in(office, "203.0.112.255") and _in(office, "203.0.113.0") and _in(office, "203.0.113.255")
    assert not _in(office, "203.0.114.0")
    assert _in(office, "198.51.100.7") and not _in(office, "198.51.100.6") and not _in(office, "198.51.100.8")
    assert _in(office, "2001:db8::") and _in(office, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")
    assert not _in(office, "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff") and not _in(office, "2001:db9::")
    # The families never mix: an IPv4-mapped address is not the IPv4 address, nor 0.0.0.0/0 an IPv6 range.
    assert not _in(office, "::ffff:203.0.113.7") and not _in(office, "::cb00:7107")
    assert _in(_ipset("0.0.0.0/0"), "0.0.0.0") and _in(_ipset("0.0.0.0/0"), "255.255.255.255")
    assert not _in(_ipset("0.0.0.0/0"), "::1")
    assert _in(_ipset("::/0"), "::") and _in(_ipset("::/0"), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
    assert not _in(_ipset("::/0"), "10.0.0.1")
    assert not _in(_ipset(), "10.0.0.1") and None not in office and "203.0.113.1" not in office


def test_overlapping_nested_and_adjacent_ranges_merge():
    merged = _ipset("10.0.0.0/8", "10.1.0.0/16", "10.255.255.255/32", "11.0.0.0/24", "9.255.255.0/24", "12.0.0.5")
    assert [
        (str(ipaddress.ip_address(a)), str(ipaddress.ip_address(b)))
        for a, b in zip(merged.v4.firsts, merged.v4.lasts, strict=True)
    ] == [("9.255.255.0", "11.0.0.255"), ("12.0.0.5", "12.0.0.5")]
    for address, expected in [
        ("9.255.254.255", False),
        ("9.255.255.0", True),
        ("10.128.0.1", True),
        ("11.0.0.255", True),
        ("11.0.1.0", False),
        ("12.0.0.4", False),
        ("12.0.0.5", True),
        ("12.0.0.6", False),
    ]:
        assert _in(merged, address) is expected, address
    # A wide range listed after narrower ones inside it still covers all of them.
    assert _in(_ipset("10.0.0.0/24", "10.0.5.0/24", "10.0.0.0/16"), "10.0.200.1")


def test_ip_list_lookup_agrees_with_a_linear_scan():
    import random

    rng = random.Random(7)
    networks = [ipaddress.ip_network((rng.randrange(1 << 32), rng.randrange(8, 33)), strict=False) for _ in range(300)]
    networks += [
        ipaddress.ip_network((rng.randrange(1 << 128), rng.randrange(16, 129)), strict=False) for _ in range(300)
    ]
    ipset = IPSet(networks)
    probes = [ipaddress.ip_address(rng.randrange(1 << 32)) for _ in range(2000)]
    probes += [network.network_address for network in networks] + [network.broadcast_address for network in networks]
    probes += [
        ipaddress.ip_address(int(network.broadcast_address) + 1)
        for network in networks
        if int(network.broadcast_address) + 1 < (1 << network.max_prefixlen)
    ]
    for address in probes:
        assert (address in ipset) is any(address in network for network in networks), address


def test_an_ip_list_rule_decides_through_the_index():
    directory = Directory(ip_lists={"vpn": _ipset("2001:db8::/48", "192.0.2.0/25")})
    rule = parse_rule({"ip_list": {"id": "vpn"}})
    assert rule_matches(rule, Subject(ip=ipaddress.ip_address("192.0.2.127")), directory)
    assert not rule_matches(rule, Subject(ip=ipaddress.ip_address("192.0.2.128")), directory)
    assert rule_matches(rule, Subject(ip=ipaddress.ip_address("2001:db8:0:ffff::1")), directory)
    assert not rule_matches(rule, Subject(email="ana@example.com"), directory)
    assert not rule_matches(
        parse_rule({"ip_list": {"id": "deleted"}}), Subject(ip=ipaddress.ip_address("192.0.2.1")), directory
    )
