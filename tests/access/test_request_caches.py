"""What the edge remembers per request path (access.runtime, edge/admission.py) changes no answer: the identity
headers encoded once per session are exactly the session's token and email, a revoked or expired session is still
refused, a new view (an `access` event, a key rotation) starts without them, and the remembered cookie, address and
application lookups answer as the uncached functions do."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import time

import pytest
from django.utils import timezone

from access import keys as access_keys
from access.events import AccessChanged
from access.runtime import MATCH_CACHE, MAX_MATCH_PATH, Kind, decide, load_org_view, revoke
from edge import admission
from edge.admission import Admit, Gate
from edge.app import origin_headers
from tests.access.conftest import DatabaseThread, require_network

HOST = "portainer.example.com"


@pytest.fixture(autouse=True)
def _team_url(settings):
    settings.PUBLIC_URL = "http://127.0.0.1:8000"


def app_token(org, app, email="ana@example.com", seconds=3600, **overrides):
    claims = access_keys.identity_claims(org, kind="app", audience=[app.aud], email=email, seconds=seconds)
    claims.update(overrides)
    return access_keys.sign(org, claims)


def scope_for(token: str, *extra: tuple[bytes, bytes], path: str = "/", client: str = "203.0.113.9") -> dict:
    headers = [(b"host", HOST.encode()), (b"cookie", b"a=1; CF_Authorization=" + token.encode()), *extra]
    return {"type": "http", "path": path, "query_string": b"", "client": (client, 5000), "headers": headers}


def admit(gate: Gate, org, scope: dict):
    """Gate.admit with the view already loaded."""
    return asyncio.run(gate.admit(DatabaseThread(), scope, org.pk, HOST, "ray-edge"))


def gate_for(org) -> Gate:
    gate = Gate()
    gate.views[org.pk] = load_org_view(org.pk)
    return gate


def test_the_identity_headers_are_the_sessions_token_and_email_encoded_once(portainer, org_a):
    gate = gate_for(org_a)
    token = app_token(org_a, portainer, iat=int(time.time()) - 5)
    spoofed = (b"cf-access-jwt-assertion", b"forged"), (b"cf-access-authenticated-user-email", b"boss@example.com")
    scope = scope_for(token, *spoofed)
    first = admit(gate, org_a, scope)
    assert isinstance(first, Admit)
    assert first.headers == (
        (b"cf-access-jwt-assertion", token.encode()),
        (b"cf-access-authenticated-user-email", b"ana@example.com"),
    )
    second = admit(gate, org_a, scope_for(token, *spoofed))
    assert second.headers is first.headers  # encoded once for the session
    # What the origin receives: the client's copies stripped, exactly one assertion, the session's own.
    sent = origin_headers(scope, "ray-edge", websocket=False) + list(second.headers)
    assert [value for name, value in sent if name == b"cf-access-jwt-assertion"] == [token.encode()]
    assert [value for name, value in sent if name == b"cf-access-authenticated-user-email"] == [b"ana@example.com"]
    # Another session gets its own bytes, never the first one's.
    other = app_token(org_a, portainer, seconds=600)
    assert admit(gate, org_a, scope_for(other)).headers[0] == (b"cf-access-jwt-assertion", other.encode())
    # Revoked: refused (to the login page) although its admission and header bytes are remembered.
    revoke(org_a.pk, "ana@example.com")
    gate.views[org_a.pk].revocations["ana@example.com"] = time.time() + 1
    status, headers, _ = admit(gate, org_a, scope_for(token))
    assert status == 302 and dict(headers)[b"location"].startswith(b"http://alpha.access.")


def test_an_expired_session_is_refused_with_its_headers_remembered(portainer, org_a):
    gate = gate_for(org_a)
    token = app_token(org_a, portainer, seconds=2)
    assert isinstance(admit(gate, org_a, scope_for(token)), Admit)
    view = gate.views[org_a.pk]
    assert token in view.identity_headers
    view.verified[token] = {**view.verified[token], "exp": time.time() - 1}  # as if its 2 s had passed
    status, _headers, _ = admit(gate, org_a, scope_for(token))
    assert status == 302


def test_a_key_rotation_or_an_access_event_starts_a_view_without_remembered_bytes(portainer, org_a):
    gate = gate_for(org_a)
    token = app_token(org_a, portainer)
    assert isinstance(admit(gate, org_a, scope_for(token)), Admit)
    old_view = gate.views[org_a.pk]
    assert old_view.identity_headers and old_view.admissions and old_view.matches
    old_kid = access_keys.current_key(org_a).kid
    access_keys.rotate_key(org_a)
    from access.models import SigningKey

    SigningKey.objects.for_org(org_a).filter(kid=old_kid).update(retired_at=timezone.now() - datetime.timedelta(days=8))
    asyncio.run(gate.on_event(AccessChanged(org_a.pk)))  # what a rotation publishes
    assert org_a.pk not in gate.views
    gate.views[org_a.pk] = load_org_view(org_a.pk)  # the reload the next request would do
    status, _headers, _ = admit(gate, org_a, scope_for(token))
    assert status == 302  # the old key no longer verifies: no remembered bytes let it through
    assert not gate.views[org_a.pk].identity_headers
    fresh = app_token(org_a, portainer)
    assert admit(gate, org_a, scope_for(fresh)).headers[0][1] == fresh.encode()


@pytest.mark.django_db(transaction=True)  # the 403 is written to the access log from another thread
def test_a_network_policy_reuses_the_bytes_but_decides_every_request(portainer, org_a):
    require_network(portainer)
    gate = gate_for(org_a)
    token = app_token(org_a, portainer)
    first = admit(gate, org_a, scope_for(token))
    assert admit(gate, org_a, scope_for(token)).headers is first.headers
    status, _headers, _ = admit(gate, org_a, scope_for(token, client="198.51.100.1"))
    assert status == 403
    assert not gate.views[org_a.pk].admissions
    from access.models import AccessRequest

    denied = AccessRequest.objects.for_org(org_a).get()  # the refusal is on the access log, with its decision id
    assert not denied.allowed and denied.ray_id == "ray-edge" and denied.ip_address == "198.51.100.1"


@pytest.mark.parametrize(
    "header",
    [
        b"CF_Authorization=abc.def.ghi",
        b"a=1; CF_Authorization=abc.def; b=2",
        b'CF_Authorization="abc.def"',
        b"CF_Authorization=old; CF_Authorization=new",
        b"XCF_Authorization=abc; CF_Authorization_x=def",
        b"CF_Authorization",
        b"CF_Authorization=" + b"x" * (admission.MEMO_VALUE_LENGTH + 1),  # too long to remember: parsed each time
    ],
)
def test_the_remembered_cookie_reads_as_the_cookie_header_does(header):
    headers = [(b"host", b"x"), (b"cookie", header)]
    expected = admission._cookie(headers)
    assert admission._session_cookie(headers) == expected
    assert admission._session_cookie([(b"host", b"x"), (b"cookie", bytes(bytearray(header)))]) == expected
    assert (header in admission._cookie_memo) == (len(header) <= admission.MEMO_VALUE_LENGTH)


def test_the_remembered_memos_are_bounded():
    admission._cookie_memo.clear()
    admission._ip_memo.clear()
    for n in range(admission.MEMO_SIZE + 5):
        admission._session_cookie([(b"cookie", b"CF_Authorization=t%d" % n)])
        admission._client_ip(f"10.0.{n // 256}.{n % 256}")
    assert 0 < len(admission._cookie_memo) <= admission.MEMO_SIZE
    assert 0 < len(admission._ip_memo) <= admission.MEMO_SIZE
    assert admission._client_ip("10.0.0.7") == ipaddress.ip_address("10.0.0.7")
    assert admission._client_ip("not an address") is None and admission._client_ip("") is None


def test_the_remembered_application_lookup_matches_the_index(portainer, org_a):
    view = load_org_view(org_a.pk)
    token = app_token(org_a, portainer)
    kwargs = {"ip": None, "country": None, "client_id": None, "client_secret": None}
    assert decide(view, host=HOST, path="/a", cookie_token=token, **kwargs).kind is Kind.ADMIT
    assert decide(view, host="other.example.com", path="/a", cookie_token=token, **kwargs).kind is Kind.FORWARD
    assert view.matches[(HOST, "/a")] is view.compiled.match(HOST, "/a")
    assert view.matches[("other.example.com", "/a")] is None
    long_path = "/" + "p" * MAX_MATCH_PATH
    assert decide(view, host=HOST, path=long_path, cookie_token=token, **kwargs).kind is Kind.ADMIT
    assert (HOST, long_path) not in view.matches
    for n in range(MATCH_CACHE + 1):
        decide(view, host=HOST, path=f"/{n}", cookie_token=None, **kwargs)
    assert len(view.matches) <= MATCH_CACHE


def test_the_country_header_setting_is_read_once_and_again_after_a_change(settings):
    settings.TRUSTED_PROXY_COUNT = 0
    settings.ACCESS_COUNTRY_HEADER = "CF-IPCountry"
    assert admission._country_header() == b""  # no trusted proxy: a visitor's header is not believed
    settings.TRUSTED_PROXY_COUNT = 1
    assert admission._country_header() == b"cf-ipcountry"
    settings.ACCESS_COUNTRY_HEADER = "X-Country"
    assert admission._country_header() == b"x-country"
