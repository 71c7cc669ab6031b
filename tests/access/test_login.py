"""The one-time PIN login on the team domain, through HTTP forms (Django's test client on the team's host), and its
attacks: enumeration, brute force, replay, expiry, throttling, open redirects, another tenant's application."""

from __future__ import annotations

import datetime
from urllib.parse import parse_qs, quote, urlsplit

import jwt
import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from access import keys as access_keys
from access.login import handoff_redeem
from access.models import AccessRequest, LoginCode
from tests.access.conftest import TEAM_HOST, pins_for

# Committed for real: the PIN email is queued after commit, as in production.
pytestmark = pytest.mark.django_db(transaction=True)

TARGET = "http://portainer.example.com:8080/dashboard?tab=2"


@pytest.fixture(autouse=True)
def _fresh_throttles():
    cache.clear()
    yield
    cache.clear()


def login_url(target: str = TARGET, host: str = "portainer.example.com") -> str:
    return f"/cdn-cgi/access/login/{host}?redirect_url={quote(target, safe='')}"


@pytest.fixture
def visitor():
    return Client(HTTP_HOST=TEAM_HOST, enforce_csrf_checks=True)


def csrf(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.content
    return response.cookies["csrftoken"].value if "csrftoken" in response.cookies else client.cookies["csrftoken"].value


def send_code(client: Client, email: str, url: str | None = None):
    url = url or login_url()
    token = csrf(client, url)
    return client.post(url, {"email": email, "redirect_url": TARGET, "csrfmiddlewaretoken": token})


def enter_pin(client: Client, email: str, pin: str):
    token = client.cookies["csrftoken"].value
    return client.post(login_url(), {"email": email, "code": pin, "redirect_url": TARGET, "csrfmiddlewaretoken": token})


def test_the_whole_login_gives_a_session_and_a_handoff_to_the_app(visitor, portainer, org_a):
    page = visitor.get(login_url())
    assert b"Sign in to Portainer" in page.content and b"Send me a code" in page.content
    answer = send_code(visitor, "Ana@Example.com")
    assert b"A code has been emailed" in answer.content
    [pin] = pins_for(org_a, "ana@example.com")
    response = enter_pin(visitor, "ana@example.com", pin)
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert (location.scheme, location.netloc, location.path) == (
        "http",
        "portainer.example.com:8080",
        "/cdn-cgi/access/authorized",
    )
    query = parse_qs(location.query)
    assert query["redirect_url"] == [TARGET]
    # The global session: a signed org token on the team domain.
    org_token = response.cookies["CF_Authorization"]
    assert org_token["httponly"]
    claims = jwt.decode(
        org_token.value,
        options={"verify_signature": False},
    )
    assert claims["type"] == "org" and claims["email"] == "ana@example.com"
    assert claims["iss"] == "http://alpha.access.localhost:8000"
    # The handoff code is single use.
    code = handoff_redeem(query["code"][0])
    assert code is not None and code.email == "ana@example.com" and code.session_seconds == 168 * 3600
    assert handoff_redeem(query["code"][0]) is None
    logged = AccessRequest.objects.for_org(org_a).get()
    assert logged.allowed and logged.user_email == "ana@example.com" and logged.app_uid == str(portainer.pk)


def test_an_email_without_access_gets_the_same_answer_and_no_code(visitor, portainer, org_a):
    answer = send_code(visitor, "eve@evil.test")
    assert answer.status_code == 200 and b"A code has been emailed" in answer.content
    assert pins_for(org_a, "eve@evil.test") == []
    assert LoginCode.objects.for_org(org_a).count() == 0


def test_the_pin_is_single_use_and_void_after_five_wrong_tries(visitor, portainer, org_a):
    send_code(visitor, "ana@example.com")
    [pin] = pins_for(org_a, "ana@example.com")
    wrong = "000000" if pin != "000000" else "111111"
    for left in (4, 3, 2, 1):
        response = enter_pin(visitor, "ana@example.com", wrong)
        assert response.status_code == 400 and f"{left} tries left".encode() in response.content
    assert b"void" in enter_pin(visitor, "ana@example.com", wrong).content
    assert b"void" in enter_pin(visitor, "ana@example.com", pin).content  # even the right one, now
    assert not AccessRequest.objects.for_org(org_a).filter(allowed=True).exists()

    send_code(visitor, "ana@example.com")
    pin = pins_for(org_a, "ana@example.com")[-1]
    assert enter_pin(visitor, "ana@example.com", pin).status_code == 302
    assert b"already been used" in enter_pin(visitor, "ana@example.com", pin).content


def test_an_expired_pin_is_refused(visitor, portainer, org_a):
    send_code(visitor, "ana@example.com")
    [pin] = pins_for(org_a, "ana@example.com")
    LoginCode.objects.for_org(org_a).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    assert b"expired" in enter_pin(visitor, "ana@example.com", pin).content


def test_the_pin_is_stored_hashed(visitor, portainer, org_a):
    send_code(visitor, "ana@example.com")
    [pin] = pins_for(org_a, "ana@example.com")
    code = LoginCode.objects.for_org(org_a).get()
    assert pin not in code.pin_hash and len(code.pin_hash) == 64


def test_sending_is_throttled_per_email(visitor, portainer, org_a):
    for _ in range(5):
        assert send_code(visitor, "ana@example.com").status_code == 200
    assert send_code(visitor, "ana@example.com").status_code == 429
    assert len(pins_for(org_a, "ana@example.com")) == 5


def test_sending_is_throttled_per_address_across_emails(visitor, portainer, org_a):
    """One address asking codes for many emails (an enumeration or a mail bomb) is stopped after 20."""
    from access.login import CODES_PER_IP

    for n in range(CODES_PER_IP):
        assert send_code(visitor, f"user{n}@example.com").status_code == 200
    assert send_code(visitor, "ana@example.com").status_code == 429
    assert pins_for(org_a, "ana@example.com") == []
    other = Client(HTTP_HOST=TEAM_HOST, REMOTE_ADDR="198.51.100.99")
    assert send_code(other, "ana@example.com").status_code == 200  # another address is not held back
    assert len(pins_for(org_a, "ana@example.com")) == 1


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.test/steal",
        "//evil.test/",
        "javascript:alert(1)",
        "http://user:pass@portainer.example.com/",
        "http://portainer.example.com.evil.test/",
    ],
)
def test_the_redirect_never_leaves_the_application(visitor, portainer, org_a, target):
    url = f"/cdn-cgi/access/login/portainer.example.com?redirect_url={quote(target, safe='')}"
    token = csrf(visitor, url)
    visitor.post(url, {"email": "ana@example.com", "redirect_url": target, "csrfmiddlewaretoken": token})
    pin = pins_for(org_a, "ana@example.com")[-1]
    response = visitor.post(
        url, {"email": "ana@example.com", "code": pin, "redirect_url": target, "csrfmiddlewaretoken": token}
    )
    location = urlsplit(response["Location"])
    assert location.hostname == "portainer.example.com"
    assert parse_qs(location.query)["redirect_url"] == ["https://portainer.example.com/"]


def test_another_tenants_application_is_unknown_on_this_team_domain(visitor, portainer, org_b):
    other = Client(HTTP_HOST="bravo.access.localhost")
    assert other.get(login_url()).status_code == 404
    assert Client(HTTP_HOST="nobody.access.localhost").get(login_url()).status_code == 404


def test_a_team_domain_serves_only_the_access_pages(visitor, portainer):
    assert visitor.get("/login/").status_code == 404
    assert visitor.get("/client/v4/accounts").status_code == 404
    assert Client().get(login_url()).status_code == 404  # and the control plane's host does not serve them


def test_single_sign_on_to_a_second_application(visitor, portainer, org_a):
    from access.services.applications import application_save
    from controlplane.actors import Actor

    application_save(
        organisation=org_a,
        actor=Actor.cli(),
        data={"name": "Wiki", "domain": "wiki.example.com", "policies": [str(portainer.policy_links.get().policy_id)]},
    )
    send_code(visitor, "ana@example.com")
    enter_pin(visitor, "ana@example.com", pins_for(org_a, "ana@example.com")[-1])
    response = visitor.get(login_url("https://wiki.example.com/page", "wiki.example.com"))
    assert response.status_code == 302 and "wiki.example.com/cdn-cgi/access/authorized" in response["Location"]
    assert len(pins_for(org_a, "ana@example.com")) == 1  # no new PIN


def test_jwks_and_get_identity(visitor, portainer, org_a):
    keys = visitor.get("/cdn-cgi/access/certs").json()
    assert len(keys["keys"]) == 1 and keys["keys"][0]["alg"] == "RS256" and len(keys["keys"][0]["kid"]) == 64
    assert "BEGIN CERTIFICATE" in keys["public_cert"]["cert"]
    assert visitor.get("/cdn-cgi/access/get-identity").status_code == 401
    send_code(visitor, "ana@example.com")
    enter_pin(visitor, "ana@example.com", pins_for(org_a, "ana@example.com")[-1])
    identity = visitor.get("/cdn-cgi/access/get-identity").json()
    assert identity["email"] == "ana@example.com" and identity["account_id"] == org_a.account_id
    assert identity["user_uuid"] == access_keys.subject_id(org_a.pk, "ana@example.com")


def test_logout_ends_the_global_session(visitor, portainer, org_a):
    send_code(visitor, "ana@example.com")
    enter_pin(visitor, "ana@example.com", pins_for(org_a, "ana@example.com")[-1])
    old = visitor.cookies["CF_Authorization"].value
    assert visitor.get("/cdn-cgi/access/logout").status_code == 200
    replay = Client(HTTP_HOST=TEAM_HOST)
    replay.cookies["CF_Authorization"] = old
    assert replay.get("/cdn-cgi/access/get-identity").status_code == 401


def test_the_login_forms_may_post_on_to_the_application_and_nowhere_else(visitor, portainer):
    """Chromium applies the CSP's form-action to the redirect that answers a form: the login page allows the
    application's own origin (the handoff), found by the browser walk of the tutorial."""
    policy = visitor.get(login_url())["Content-Security-Policy"]
    assert "form-action 'self' http://portainer.example.com:8080" in policy
    assert "script-src 'self'" in policy and "evil" not in policy


def test_the_app_token_carries_every_claim_and_lives_the_apps_session(visitor, portainer, org_a, org_b, settings):
    """The claims Cloudflare puts in an application token: `country` when the front proxy says it, a fresh
    `identity_nonce`, `sub` stable per email per organisation, and `exp - iat` exactly the app's session (168h)."""
    from access.keys import subject_id
    from access.runtime import redeem_handoff

    settings.ACCESS_COUNTRY_HEADER = "CF-IPCountry"
    settings.TRUSTED_PROXY_COUNT = 1
    visitor.defaults["HTTP_CF_IPCOUNTRY"] = "gb"
    visitor.defaults["HTTP_X_FORWARDED_FOR"] = "198.51.100.4"
    send_code(visitor, "Ana@Example.com")
    [pin] = pins_for(org_a, "ana@example.com")
    response = enter_pin(visitor, "ana@example.com", pin)
    org_claims = jwt.decode(response.cookies["CF_Authorization"].value, options={"verify_signature": False})
    code = parse_qs(urlsplit(response["Location"]).query)["code"][0]
    token, seconds, app_id = redeem_handoff(org_a.pk, code)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert app_id == str(portainer.pk) and claims["aud"] == [portainer.aud] and claims["type"] == "app"
    assert seconds == 168 * 3600 and claims["exp"] - claims["iat"] == 168 * 3600 and claims["nbf"] == claims["iat"]
    assert claims["country"] == "GB" and claims["email"] == "ana@example.com"
    assert len(claims["identity_nonce"]) >= 32 and claims["identity_nonce"] != org_claims["identity_nonce"]
    assert claims["sub"] == org_claims["sub"] == subject_id(org_a.pk, "ANA@example.com")
    assert subject_id(org_b.pk, "ana@example.com") != claims["sub"]
    assert redeem_handoff(org_a.pk, code) is None  # the handoff is single use


def test_without_a_trusted_front_proxy_the_country_is_unknown_and_left_out(visitor, portainer, org_a, settings):
    from access.runtime import redeem_handoff

    settings.ACCESS_COUNTRY_HEADER = "CF-IPCountry"
    settings.TRUSTED_PROXY_COUNT = 0
    visitor.defaults["HTTP_CF_IPCOUNTRY"] = "GB"  # sent by the client itself: not to be believed
    send_code(visitor, "ana@example.com")
    [pin] = pins_for(org_a, "ana@example.com")
    code = parse_qs(urlsplit(enter_pin(visitor, "ana@example.com", pin)["Location"]).query)["code"][0]
    token, _, _ = redeem_handoff(org_a.pk, code)
    assert "country" not in jwt.decode(token, options={"verify_signature": False})


def test_the_organisations_login_design_is_applied_to_the_login_page(visitor, portainer, org_a):
    """Cloudflare's `login_design` (colours, logo, header and footer text) on the page, allowed by its CSP."""
    import base64
    import hashlib
    import re

    from access.services.settings import access_settings_update
    from controlplane.actors import Actor

    plain = visitor.get(login_url())
    assert b"<style>" not in plain.content and b'class="page-text"' not in plain.content
    access_settings_update(
        organisation=org_a,
        actor=Actor.cli(),
        data={
            "login_design": {
                "background_color": "#112233",
                "text_color": "#fafafa",
                "logo_path": "https://cdn.example.net/alpha.png",
                "header_text": "Alpha <tools>",
                "footer_text": "Need help? it@example.com",
            }
        },
    )
    page = visitor.get(login_url())
    html = page.content.decode()
    css = re.search(r"<style>(.*?)</style>", html).group(1)
    assert css == ":root{--page:#112233;--page-ink:#fafafa}"
    assert '<header class="page-text">Alpha &lt;tools&gt;</header>' in html
    assert '<footer class="page-text">Need help? it@example.com</footer>' in html
    assert '<img class="logo" src="https://cdn.example.net/alpha.png"' in html
    policy = page["Content-Security-Policy"]
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    assert f"style-src 'self' 'sha256-{digest}'" in policy
    assert "img-src 'self' data: https://cdn.example.net" in policy
    assert "form-action 'self' http://portainer.example.com:8080" in policy
    # The code step and the denied page carry the same design.
    send = send_code(visitor, "ana@example.com")
    assert b"--page:#112233" in send.content and "sha256-" in send["Content-Security-Policy"]


def test_an_applications_own_logo_wins_over_the_organisations(visitor, portainer, org_a):
    from access.services.settings import access_settings_update
    from controlplane.actors import Actor

    access_settings_update(
        organisation=org_a, actor=Actor.cli(), data={"login_design": {"logo_path": "https://cdn.example.net/a.png"}}
    )
    portainer.logo_url = "https://portainer.example.com/logo.svg"
    portainer.save()
    page = visitor.get(login_url())
    assert b'src="https://portainer.example.com/logo.svg"' in page.content
    assert "img-src 'self' data: https://portainer.example.com;" in page["Content-Security-Policy"]
