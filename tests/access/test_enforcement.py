"""The edge's decisions from the per-process view (access.runtime): valid sessions admitted, everything forged,
expired, revoked or for another application refused; service tokens; Bypass; network rules on every request."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import time

import jwt
import pytest
from django.utils import timezone

from access import keys as access_keys
from access.runtime import Kind, decide, load_org_view
from access.services.applications import application_revoke_tokens, application_save
from access.services.directory import service_token_create
from access.services.policies import policy_save
from controlplane.actors import Actor
from tests.access.conftest import require_network

OFFICE = ipaddress.ip_address("203.0.113.9")


def app_token(org, app, email="ana@example.com", seconds=3600, **overrides):
    claims = access_keys.identity_claims(org, kind="app", audience=[app.aud], email=email, seconds=seconds)
    claims.update(overrides)
    return access_keys.sign(org, claims)


def ask(view, token=None, *, host="portainer.example.com", path="/", ip=OFFICE, client=None):
    client_id, secret = client or (None, None)
    return decide(
        view, host=host, path=path, ip=ip, country=None, cookie_token=token, client_id=client_id, client_secret=secret
    )


def test_a_valid_session_is_admitted_and_the_rest_must_sign_in(portainer, org_a):
    view = load_org_view(org_a.pk)
    admitted = ask(view, app_token(org_a, portainer))
    assert admitted.kind is Kind.ADMIT and admitted.email == "ana@example.com"
    assert ask(view).kind is Kind.LOGIN
    assert ask(view, host="other.example.com").kind is Kind.FORWARD  # not an application
    # An identity the policy does not admit (a token minted for someone else) is denied, not sent to log in.
    assert ask(view, app_token(org_a, portainer, email="bo@example.com")).kind is Kind.DENY


def _forge_none(org, app):
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=")
    claims = access_keys.identity_claims(org, kind="app", audience=[app.aud], email="ana@example.com", seconds=600)
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    return (header + b"." + body + b".").decode()


def test_forged_expired_and_misdirected_tokens_are_refused(portainer, org_a, org_b):
    view = load_org_view(org_a.pk)
    genuine = app_token(org_a, portainer)
    head, body, signature = genuine.split(".")
    tampered_claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    tampered_claims["email"] = "ana@example.com"
    tampered_claims["exp"] += 10**6
    tampered = ".".join(
        [head, base64.urlsafe_b64encode(json.dumps(tampered_claims).encode()).rstrip(b"=").decode(), signature]
    )
    hs256 = jwt.encode({"email": "ana@example.com", "aud": [portainer.aud]}, "secret", algorithm="HS256")
    expired = app_token(org_a, portainer, exp=int(time.time()) - 60)
    org_token = access_keys.sign(
        org_a,
        access_keys.identity_claims(org_a, kind="org", audience=[portainer.aud], email="ana@example.com", seconds=60),
    )
    wrong_issuer = app_token(org_a, portainer, iss="https://evil.test")
    for token in [
        tampered,
        hs256,
        _forge_none(org_a, portainer),
        expired,
        org_token,
        wrong_issuer,
        "garbage",
        "a" * 9000,
    ]:
        assert ask(view, token).kind is Kind.LOGIN, token[:40]

    # Another application's token (another AUD), and another tenant's key.
    wiki = application_save(organisation=org_a, actor=Actor.cli(), data={"name": "Wiki", "domain": "wiki.example.com"})
    view = load_org_view(org_a.pk)
    assert ask(view, app_token(org_a, wiki)).kind is Kind.LOGIN
    from access.models import Application

    other_app = Application(organisation=org_b, aud=portainer.aud)
    foreign = access_keys.sign(
        org_b,
        access_keys.identity_claims(org_b, kind="app", audience=[other_app.aud], email="ana@example.com", seconds=60),
    )
    assert ask(view, foreign).kind is Kind.LOGIN


def test_revoking_the_applications_tokens_or_the_user_refuses_older_tokens(portainer, org_a):
    token = app_token(org_a, portainer, iat=int(time.time()) - 5)
    assert ask(load_org_view(org_a.pk), token).kind is Kind.ADMIT
    application_revoke_tokens(app=portainer, actor=Actor.cli())
    assert ask(load_org_view(org_a.pk), token).kind is Kind.LOGIN
    from access.runtime import revoke

    portainer.tokens_revoked_at = None
    portainer.save()
    assert ask(load_org_view(org_a.pk), token).kind is Kind.ADMIT
    revoke(org_a.pk, "ana@example.com")
    assert ask(load_org_view(org_a.pk), token).kind is Kind.LOGIN


def test_network_rules_are_checked_on_every_request(portainer, org_a):
    require_network(portainer)
    view = load_org_view(org_a.pk)
    token = app_token(org_a, portainer)
    assert ask(view, token).kind is Kind.ADMIT
    assert ask(view, token, ip=ipaddress.ip_address("198.51.100.1")).kind is Kind.DENY


def test_service_tokens_and_bypass(portainer, org_a):
    token, secret = service_token_create(organisation=org_a, actor=Actor.cli(), data={"name": "ci"})
    ci = policy_save(
        organisation=org_a,
        actor=Actor.cli(),
        data={"name": "CI", "decision": "non_identity", "include": [{"service_token": {"token_id": str(token.pk)}}]},
    )
    health = policy_save(
        organisation=org_a,
        actor=Actor.cli(),
        data={"name": "Office", "decision": "bypass", "include": [{"ip": {"ip": "192.0.2.0/24"}}]},
    )
    me = portainer.policy_links.get().policy
    application_save(
        organisation=org_a,
        actor=Actor.cli(),
        app=portainer,
        data={
            "name": "Portainer",
            "domain": "portainer.example.com",
            "policies": [str(me.pk), str(ci.pk), str(health.pk)],
        },
    )
    view = load_org_view(org_a.pk)
    service = ask(view, client=(token.client_id, secret))
    assert service.kind is Kind.SERVICE and service.service_token_id == str(token.pk)
    assert ask(view, client=(token.client_id, "0" * 64)).kind is Kind.LOGIN
    assert ask(view, client=("nobody.access", secret)).kind is Kind.LOGIN
    assert ask(view, ip=ipaddress.ip_address("192.0.2.50")).kind is Kind.FORWARD  # bypassed: no login, no log
    token.expires_at = timezone.now() - datetime.timedelta(seconds=1)
    token.save()
    assert ask(load_org_view(org_a.pk), client=(token.client_id, secret)).kind is Kind.LOGIN


def test_an_origin_validates_our_token_as_it_validates_cloudflares(portainer, org_a):
    """What an origin written for Cloudflare Access does: fetch the JWKS, pick the key by `kid`, check RS256, the
    AUD tag and the issuer."""
    token = app_token(org_a, portainer)
    jwks = access_keys.jwks(org_a)
    signing_key = jwt.PyJWKSet.from_dict({"keys": jwks["keys"]})[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(
        token,
        signing_key.key,
        algorithms=["RS256"],
        audience=portainer.aud,
        issuer="http://alpha.access.localhost:8000",
    )
    assert claims["email"] == "ana@example.com" and claims["type"] == "app"
    assert claims["exp"] - claims["iat"] == 3600
    assert set(claims) >= {"aud", "email", "exp", "iat", "nbf", "iss", "type", "identity_nonce", "sub"}


def test_rotation_keeps_the_previous_key_for_seven_days(portainer, org_a):
    before = app_token(org_a, portainer)
    old_kid = access_keys.current_key(org_a).kid
    access_keys.rotate_key(org_a)
    assert access_keys.current_key(org_a).kid != old_kid
    kids = [key["kid"] for key in access_keys.jwks(org_a)["keys"]]
    assert len(kids) == 2 and old_kid in kids
    assert ask(load_org_view(org_a.pk), before).kind is Kind.ADMIT
    from access.models import SigningKey

    SigningKey.objects.for_org(org_a).filter(kid=old_kid).update(retired_at=timezone.now() - datetime.timedelta(days=8))
    assert ask(load_org_view(org_a.pk), before).kind is Kind.LOGIN
    assert [key["kid"] for key in access_keys.jwks(org_a)["keys"]] == [access_keys.current_key(org_a).kid]


@pytest.fixture(autouse=True)
def _team_url(settings):
    settings.PUBLIC_URL = "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"CF_Authorization=abc.def.ghi", "abc.def.ghi"),
        (b"a=1; CF_Authorization=abc.def; b=2", "abc.def"),
        (b'CF_Authorization="abc.def"', "abc.def"),
        (b"CF_Authorization=old; CF_Authorization=new", "new"),
        (b"XCF_Authorization=abc; CF_Authorization_x=def", None),
        (b"CF_Authorization", ""),
        (b"other=1", None),
    ],
)
def test_the_session_cookie_is_read_from_the_cookie_header(header, expected):
    from edge.admission import _cookie

    assert _cookie([(b"host", b"x"), (b"cookie", header)]) == expected


def test_an_identity_only_decision_is_remembered_for_the_views_life_and_a_network_one_never(portainer, org_a):
    view = load_org_view(org_a.pk)
    token = app_token(org_a, portainer)
    first = ask(view, token)
    assert first.kind is Kind.ADMIT and ask(view, token) is first  # remembered: one dict lookup next time
    # Revocation is still checked on every request, remembered or not.
    from access.runtime import revoke

    revoke(org_a.pk, "ana@example.com")
    view.revocations["ana@example.com"] = time.time() + 1
    assert ask(view, token).kind is Kind.LOGIN
    # A policy that reads the request's address is evaluated every time.
    require_network(portainer, email="bo@example.com")
    view = load_org_view(org_a.pk)
    bo = app_token(org_a, portainer, email="bo@example.com")
    assert ask(view, bo).kind is Kind.ADMIT
    assert ask(view, bo, ip=ipaddress.ip_address("198.51.100.1")).kind is Kind.DENY
    assert not view.admissions


@pytest.mark.django_db(transaction=True)
def test_the_edges_refusals_are_on_the_access_log_with_their_decision_id(portainer, org_a):
    """A 403 at the edge names a decision id; the admin finds it on the access log (once a minute per visitor, so a
    client retrying cannot flood the log). Admitted and bypassed requests are not logged."""
    import asyncio

    from access import login as flow
    from access.models import AccessRequest
    from edge.admission import Gate
    from tests.access.conftest import DatabaseThread

    def request(token, ip, ray):
        scope = {
            "type": "http",
            "path": "/",
            "query_string": b"",
            "client": (ip, 50000),
            "headers": [(b"host", b"portainer.example.com"), (b"cookie", b"CF_Authorization=" + token.encode())],
        }
        return asyncio.run(gate.admit(DatabaseThread(), scope, org_a.pk, "portainer.example.com", ray))

    flow._logged_denials.clear()
    gate = Gate()
    assert request(app_token(org_a, portainer), "203.0.113.9", "ray-admitted").__class__.__name__ == "Admit"
    bo = app_token(org_a, portainer, email="bo@example.com")
    status, headers, body = request(bo, "198.51.100.1", "ray-refused-1")
    assert status == 403 and b"ray-refused-1" in body
    assert request(bo, "198.51.100.1", "ray-refused-2")[0] == 403  # the same visitor within the minute
    [row] = AccessRequest.objects.for_org(org_a)
    assert (row.ray_id, row.user_email, row.ip_address, row.allowed, row.action) == (
        "ray-refused-1",
        "bo@example.com",
        "198.51.100.1",
        False,
        "request",
    )
    assert row.app_uid == str(portainer.pk) and row.reason
    assert request(bo, "198.51.100.2", "ray-refused-3")[0] == 403  # another address is another visitor
    assert AccessRequest.objects.for_org(org_a).count() == 2
    flow._logged_denials.clear()
