"""Inputs that used to answer 500: a body over the size limit (413), JSON nested too deeply (400), and a sign-in
while Redis is down (503). Each answers with the v4 envelope on the API and a page in the UI."""

from __future__ import annotations

import json
import socket

import pytest
from django.conf import settings
from django.core.cache import cache

from controlplane.api.parsers import MAX_JSON_DEPTH, json_depth_exceeds
from controlplane.security_headers import UI_POLICY
from tests.conftest import make_token
from tests.factories import DEFAULT_PASSWORD

pytestmark = pytest.mark.django_db

THREE_MIB = 3 * 1024 * 1024


def closed_port() -> int:
    """A local port nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def api(client, org_a):
    token = make_token(org_a)

    def call(method: str, path: str, body: bytes | str):
        return getattr(client, method)(
            f"/client/v4{path}", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
        )

    return call


def assert_envelope(response, status: int, code: int, text: str) -> None:
    assert response.status_code == status, response.content[:300]
    body = response.json()
    assert body["success"] is False and body["result"] is None
    assert [error["code"] for error in body["errors"]] == [code]
    assert text in body["errors"][0]["message"]


@pytest.mark.parametrize(
    "method, path",
    [
        ("post", "/accounts/{account}/cfd_tunnel"),
        ("post", "/accounts/{account}/members"),
        ("put", "/accounts/{account}/cfd_tunnel/00000000000000000000000000000000/configurations"),
        ("post", "/zones"),
    ],
)
def test_a_body_of_3_mib_is_413_with_the_envelope(api, org_a, method, path):
    body = json.dumps({"name": "x" * THREE_MIB})
    response = api(method, path.format(account=org_a.account_id), body)
    # The installation's limit, or a smaller one of the endpoint's (a tunnel configuration takes at most 1 MiB).
    limit = 1024 * 1024 if path.endswith("/configurations") else settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    assert_envelope(response, 413, 1013, f"larger than {limit} bytes")


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1_000, 100_000])
def test_json_nested_too_deeply_is_400_with_the_envelope(api, org_a, depth):
    body = "[" * depth + "]" * depth
    response = api("post", f"/accounts/{org_a.account_id}/cfd_tunnel", body)
    assert_envelope(response, 400, 1003, f"nested more than {MAX_JSON_DEPTH} levels")
    deep_object = '{"a":' * depth + "1" + "}" * depth
    response = api(
        "post",
        f"/accounts/{org_a.account_id}/cfd_tunnel",
        json.dumps({"name": "t", "x": 1})[:-1] + ',"deep":' + deep_object + "}",
    )
    assert_envelope(response, 400, 1003, "nested")


def test_json_within_the_depth_limit_is_parsed(api, org_a):
    nested = {"name": "deep-but-fine"}
    node = nested
    for _ in range(MAX_JSON_DEPTH - 2):
        node["x"] = {}
        node = node["x"]
    response = api("post", f"/accounts/{org_a.account_id}/cfd_tunnel", json.dumps(nested))
    assert response.status_code == 200, response.content[:300]
    assert response.json()["result"]["name"] == "deep-but-fine"


def test_depth_measure_is_iterative_and_exact():
    value: list = []
    for _ in range(50_000):
        value = [value]
    assert json_depth_exceeds(value, 64)
    assert not json_depth_exceeds([[{"a": [1]}]], 4) and json_depth_exceeds([[{"a": [[1]]}]], 4)
    assert not json_depth_exceeds("text", 0)


def test_a_ui_form_of_3_mib_is_a_413_page(client):
    response = client.post("/login/", {"email": "a@example.com", "password": "x" * THREE_MIB})
    assert response.status_code == 413
    html = response.content.decode()
    assert "Request too large" in html and "2.5" in html
    assert response["Content-Security-Policy"] == UI_POLICY


@pytest.fixture
def redis_down(settings):
    """The cache (sign-in throttles) on Redis, as with REDIS_URL in production, but nothing listens there."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port()}/6",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    yield
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def test_sign_in_while_redis_is_down_is_a_503_page(client, admin_a, redis_down):
    with pytest.raises(Exception, match="Connection refused|Error 111"):
        cache.get("anything")
    response = client.post("/login/", {"email": admin_a.email, "password": DEFAULT_PASSWORD})
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    html = response.content.decode()
    assert "Temporarily unavailable" in html and "Try again in a few moments" in html
    assert "_auth_user_id" not in client.session


@pytest.mark.slow
def test_sign_in_on_a_server_whose_redis_is_down_is_a_503_page(transactional_db, admin_a):
    """As in production: a real server with REDIS_URL set (cache, channel layer, broker) and Redis not answering."""
    import http.cookiejar
    import re
    import urllib.error
    import urllib.parse
    import urllib.request

    from tests.live_server import run_daphne

    with run_daphne(env={"REDIS_URL": f"redis://127.0.0.1:{closed_port()}/6"}) as server:
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        with opener.open(server.url + "/login/", timeout=15) as page:
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.read().decode())[1]
        form = urllib.parse.urlencode(
            {"csrfmiddlewaretoken": token, "email": admin_a.email, "password": DEFAULT_PASSWORD}
        ).encode()
        request = urllib.request.Request(server.url + "/login/", data=form, headers={"Referer": server.url + "/login/"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            opener.open(request, timeout=30)
        assert refused.value.code == 503
        assert "Temporarily unavailable" in refused.value.read().decode()
        assert "Traceback" not in server.log_text()
