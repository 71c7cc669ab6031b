"""API tokens are read once a second per process at most (controlplane/services/tokens.py): a revocation still
takes effect within a second, even when it bypasses this process (another worker, another instance)."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.actors import Actor
from controlplane.models import ApiToken
from controlplane.models.tokens import hash_token
from controlplane.services.tokens import (
    TOKEN_CACHE_SECONDS,
    TokenRejected,
    api_token_authenticate,
    api_token_revoke,
    forget_cached_tokens,
)
from tests.conftest import make_token

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _empty_cache():
    forget_cached_tokens()
    yield
    forget_cached_tokens()


def test_a_repeated_bearer_is_not_looked_up_again(org_a):
    raw = make_token(org_a)
    api_token_authenticate(raw, ip="127.0.0.1")
    with CaptureQueriesContext(connection) as queries:
        token = api_token_authenticate(raw, ip="127.0.0.1")
    assert len(queries) == 0
    assert token.organisation == org_a


def test_each_caller_gets_objects_of_its_own(org_a):
    raw = make_token(org_a)
    first = api_token_authenticate(raw, ip="127.0.0.1")
    grants = dict(first.grants)
    first.organisation.display_name = "changed by one request"
    first.grants["tunnels"] = "changed by one request"
    first.allowed_networks.append("10.0.0.0/8")
    second = api_token_authenticate(raw, ip="127.0.0.1")
    assert second.organisation.display_name == org_a.display_name
    assert second.grants == grants and second.allowed_networks == []
    assert second is not first and second.organisation is not first.organisation
    # Usable rows: saved and read as any other.
    assert second._state.adding is False and second.organisation.pk == org_a.pk
    second.name = "renamed"
    second.save(update_fields=["name"])
    assert ApiToken.objects.for_org(org_a).get(pk=second.pk).name == "renamed"


def test_a_revocation_elsewhere_counts_within_a_second(org_a):
    api_client = Client()
    raw = make_token(org_a)
    token = ApiToken.objects.unscoped("test").get(token_hash=hash_token(raw))
    url = f"/client/v4/accounts/{org_a.account_id}"
    headers = {"Authorization": f"Bearer {raw}"}
    assert api_client.get(url, headers=headers).status_code == 200
    # As another process would: straight to the database, nothing in this process hears of it.
    revoked_at = time.monotonic()
    ApiToken.objects.unscoped("test").filter(pk=token.pk).update(revoked_at=timezone.now())
    while api_client.get(url, headers=headers).status_code == 200:
        assert time.monotonic() - revoked_at < TOKEN_CACHE_SECONDS + 0.5, "still accepted after a second"
        time.sleep(0.02)
    assert time.monotonic() - revoked_at <= TOKEN_CACHE_SECONDS + 0.1
    assert api_client.get(url, headers=headers).status_code == 401


def test_a_revocation_in_this_process_counts_at_once(org_a):
    raw = make_token(org_a)
    token = ApiToken.objects.unscoped("test").get(token_hash=hash_token(raw))
    api_token_authenticate(raw, ip="127.0.0.1")
    api_token_revoke(token=token, actor=Actor.cli())
    with pytest.raises(TokenRejected, match="disabled"):
        api_token_authenticate(raw, ip="127.0.0.1")


def test_a_changed_organisation_is_read_again(org_a):
    raw = make_token(org_a)
    api_token_authenticate(raw, ip="127.0.0.1")
    org_a.require_2fa = not org_a.require_2fa
    org_a.save()
    assert api_token_authenticate(raw, ip="127.0.0.1").organisation.require_2fa == org_a.require_2fa


def test_ip_rules_and_expiry_apply_to_a_cached_token(org_a):
    raw = make_token(org_a, allowed_networks=["10.0.0.0/8"])
    api_token_authenticate(raw, ip="10.1.2.3")
    with pytest.raises(TokenRejected, match="IP address"):
        api_token_authenticate(raw, ip="192.0.2.1")
