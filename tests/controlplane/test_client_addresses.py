"""Client addresses behind the documented TLS proxy (TRUSTED_PROXY_COUNT): sign-in throttling, the audit log and
IP-restricted tokens see the real client, and a client cannot choose its address when no proxy is declared."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.cache import cache

from controlplane.choices import AuditAction
from controlplane.models import AuditEvent
from tests.conftest import make_token
from tests.factories import DEFAULT_PASSWORD, MembershipFactory, UserFactory

PROXY = "10.0.0.2"
LOGIN = "/login/"


@pytest.fixture(autouse=True)
def _fresh_throttles(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.LOGIN_IP_MAX_FAILURES = 3
    settings.LOGIN_MAX_FAILURES = 100
    cache.clear()
    yield
    cache.clear()


def login(client, email, password, *, forwarded_for=None, remote=PROXY):
    extra = {"REMOTE_ADDR": remote}
    if forwarded_for is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return client.post(LOGIN, {"email": email, "password": password}, **extra)


def settings_value(name: str, **environment: str) -> str:
    """A setting as a fresh process computes it from `environment` (the settings are read once, at start)."""
    env = {k: v for k, v in os.environ.items() if k not in {"TRUSTED_PROXY_COUNT", "EDGE_TRUSTED_PROXY_COUNT"}}
    env.update(environment, DJANGO_SETTINGS_MODULE="controlplane.settings")
    code = f"import django; django.setup(); from django.conf import settings; print(settings.{name})"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    return (result.stdout.strip().splitlines() or [""])[-1] + result.stderr.strip()[-300:]


def test_the_setting_is_read_from_the_environment_with_the_edge_name_as_a_deprecated_alias():
    assert settings_value("TRUSTED_PROXY_COUNT") == "0"
    assert settings_value("TRUSTED_PROXY_COUNT", TRUSTED_PROXY_COUNT="1") == "1"
    assert settings_value("TRUSTED_PROXY_COUNT", EDGE_TRUSTED_PROXY_COUNT="2") == "2"
    assert "disagree" in settings_value("TRUSTED_PROXY_COUNT", TRUSTED_PROXY_COUNT="1", EDGE_TRUSTED_PROXY_COUNT="2")
    assert "0 or more" in settings_value("TRUSTED_PROXY_COUNT", TRUSTED_PROXY_COUNT="-1")


def test_behind_one_proxy_failures_throttle_only_their_client(client, settings, admin_a):
    settings.TRUSTED_PROXY_COUNT = 1
    for _ in range(3):
        login(client, "nobody@alpha.test", "wrong", forwarded_for="198.51.100.7")
    assert "from your network" in login(client, admin_a.email, DEFAULT_PASSWORD, forwarded_for="198.51.100.7").text
    # Another client behind the same proxy signs in; the throttled client cannot escape by claiming an address
    # (the proxy appends the real one: only the rightmost entry is trusted).
    response = login(client, admin_a.email, DEFAULT_PASSWORD, forwarded_for="203.0.113.9")
    assert response.status_code == 302
    client.logout()
    spoofing = login(client, admin_a.email, DEFAULT_PASSWORD, forwarded_for="203.0.113.9, 198.51.100.7")
    assert "from your network" in spoofing.text


def test_the_audit_log_records_the_client_behind_the_proxy(client, settings, admin_a, org_a):
    settings.TRUSTED_PROXY_COUNT = 1
    assert login(client, admin_a.email, DEFAULT_PASSWORD, forwarded_for="1.2.3.4, 203.0.113.9").status_code == 302
    event = AuditEvent.objects.for_org(org_a).get(action=AuditAction.LOGIN)
    assert event.ip == "203.0.113.9"


def test_without_a_declared_proxy_a_forwarded_for_header_is_ignored(client, settings, admin_a, org_a):
    settings.TRUSTED_PROXY_COUNT = 0
    for _ in range(3):
        login(client, "nobody@alpha.test", "wrong", forwarded_for="198.51.100.7", remote="192.0.2.1")
    # The throttle is on the socket's address, whatever the header claims.
    blocked = login(client, admin_a.email, DEFAULT_PASSWORD, forwarded_for="203.0.113.9", remote="192.0.2.1")
    assert "from your network" in blocked.text
    assert (
        login(client, admin_a.email, DEFAULT_PASSWORD, forwarded_for="192.0.2.1", remote="192.0.2.50").status_code
        == 302
    )
    assert AuditEvent.objects.for_org(org_a).get(action=AuditAction.LOGIN).ip == "192.0.2.50"


def test_a_proxy_writing_garbage_falls_back_to_the_socket_address(client, settings, admin_a, org_a):
    settings.TRUSTED_PROXY_COUNT = 1
    assert login(client, admin_a.email, DEFAULT_PASSWORD, forwarded_for="not-an-ip").status_code == 302
    assert AuditEvent.objects.for_org(org_a).get(action=AuditAction.LOGIN).ip == PROXY


@pytest.mark.parametrize(
    ("proxies", "remote", "forwarded_for", "allowed"),
    [
        (1, PROXY, "203.0.113.7", True),  # the client, behind the proxy, is inside the token's range
        (1, PROXY, "203.0.113.7, 198.51.100.1", False),  # the proxy saw 198.51.100.1; the rest is a claim
        (1, PROXY, None, False),  # no header: the proxy's own address, outside the range
        (0, "198.51.100.1", "203.0.113.7", False),  # no proxy declared: the header is the client's claim
        (0, "203.0.113.7", None, True),
    ],
)
def test_ip_restricted_tokens_work_behind_the_proxy(client, settings, org_a, proxies, remote, forwarded_for, allowed):
    settings.TRUSTED_PROXY_COUNT = proxies
    raw = make_token(org_a, {"members": "read"}, allowed_networks=["203.0.113.0/24"])
    extra = {"REMOTE_ADDR": remote, "HTTP_AUTHORIZATION": f"Bearer {raw}"}
    if forwarded_for is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded_for
    MembershipFactory(organisation=org_a, user=UserFactory(email="someone@alpha.test"))
    response = client.get(f"/client/v4/accounts/{org_a.account_id}/members", **extra)
    assert (response.status_code == 200) is allowed, response.content
    if not allowed:
        assert "cannot be used from this IP address" in response.text
