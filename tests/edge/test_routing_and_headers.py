"""Edge building blocks: the hostname table, header hygiene, and which hosts belong to the control plane."""

from __future__ import annotations

import uuid

from edge.headers import is_control_plane_host, origin_headers, request_host, response_headers
from edge.pages import error_body
from edge.routes import Route, RouteTable

ORG = uuid.uuid4()


def table(*names: str) -> RouteTable:
    routes = RouteTable()
    routes.replace([Route(name, ORG, uuid.uuid5(uuid.NAMESPACE_DNS, name)) for name in names])
    return routes


def test_exact_names_win_over_wildcards_and_wildcards_cover_any_depth_but_not_the_apex():
    routes = table("app.example.com", "*.example.com", "*.deep.example.com")
    assert routes.lookup("app.example.com").hostname == "app.example.com"
    assert routes.lookup("x.example.com").hostname == "*.example.com"
    assert routes.lookup("a.b.example.com").hostname == "*.example.com"
    assert routes.lookup("a.deep.example.com").hostname == "*.deep.example.com"
    assert routes.lookup("example.com") is None
    assert routes.lookup("badexample.com") is None
    assert routes.lookup("other.org") is None


def test_request_host_strips_port_case_and_trailing_dot():
    assert request_host({"headers": [(b"host", b"App.Example.com.:8443")]})[0] == "app.example.com"
    assert request_host({"headers": [(b"host", b"[::1]:8000")]})[0] == "[::1]"
    assert request_host({"headers": []})[0] == ""


def test_control_plane_hosts_are_never_routed(settings):
    settings.CONTROL_PLANE_HOSTS = ["zt.example.org", "127.0.0.1"]
    settings.CONTROL_PLANE_DOMAIN_SUFFIXES = [".access.example.org"]
    assert is_control_plane_host("zt.example.org")
    assert is_control_plane_host("team.access.example.org")
    assert is_control_plane_host("")
    assert not is_control_plane_host("app.example.org")


def headers_of(scope_headers, **scope):
    return origin_headers(
        {"headers": scope_headers, "client": ("203.0.113.7", 5000), "scheme": "https", **scope},
        "abc-edge",
        websocket=False,
    )


def test_spoofed_edge_headers_and_hop_by_hop_headers_are_dropped(settings):
    settings.TRUSTED_PROXY_COUNT = 0
    out = headers_of(
        [
            (b"host", b"app.example.com"),
            (b"cf-connecting-ip", b"1.1.1.1"),
            (b"cf-access-jwt-assertion", b"forged"),
            (b"cf-access-authenticated-user-email", b"ceo@example.com"),
            (b"x-forwarded-for", b"1.1.1.1"),
            (b"connection", b"keep-alive, x-secret"),
            (b"x-secret", b"hop"),
            (b"keep-alive", b"timeout=5"),
            (b"accept", b"*/*"),
        ]
    )
    names = [name for name, _ in out]
    assert b"cf-access-jwt-assertion" not in names and b"cf-access-authenticated-user-email" not in names
    assert b"x-secret" not in names and b"keep-alive" not in names and b"connection" not in names
    assert dict(out)[b"cf-connecting-ip"] == b"203.0.113.7"
    assert dict(out)[b"x-forwarded-for"] == b"203.0.113.7"
    assert dict(out)[b"x-forwarded-proto"] == b"https"
    assert dict(out)[b"cf-ray"] == b"abc-edge"
    assert (b"accept", b"*/*") in out and (b"host", b"app.example.com") in out


def test_a_declared_proxy_in_front_is_trusted_for_the_client_address(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    out = dict(
        headers_of([(b"x-forwarded-for", b"198.51.100.1, 192.0.2.9"), (b"x-forwarded-proto", b"https")], scheme="http")
    )
    assert out[b"cf-connecting-ip"] == b"192.0.2.9"
    assert out[b"x-forwarded-for"] == b"198.51.100.1, 192.0.2.9, 203.0.113.7"
    assert out[b"x-forwarded-proto"] == b"https"


def test_response_headers_lose_hop_by_hop_and_gain_the_request_id():
    out = response_headers([(b"Content-Type", b"text/plain"), (b"Transfer-Encoding", b"chunked")], "rid")
    assert out == [(b"content-type", b"text/plain"), (b"cf-ray", b"rid")]


def test_error_pages_name_the_request_id_in_html_and_json():
    html, kind = error_body(530, "rid-1", "No connector", as_json=False, host="app.example.com")
    assert kind.startswith(b"text/html") and b"rid-1" in html and b"1033" in html
    body, kind = error_body(530, "rid-1", "No connector", as_json=True)
    assert kind == b"application/json" and b'"code": 1033' in body
