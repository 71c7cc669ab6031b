"""The queries of each request bench/api measures (issue 13), pinned: a change that adds one fails here first.

The counts are of one request right after a first one, as the benchmark's: the token comes from the one-second
token cache (tests/controlplane/test_token_cache.py counts the lookup itself)."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.actors import Actor
from tests.conftest import make_token
from tunnels.services import tunnel_create

CONFIG = {"config": {"ingress": [{"service": "http_status:404"}], "warp-routing": {"enabled": False}}}


@pytest.fixture
def api(client, org_a):
    token = make_token(org_a, {"tunnels": "edit"})
    tunnel = tunnel_create(organisation=org_a, name="bench", actor=Actor.cli())
    base = f"/client/v4/accounts/{org_a.account_id}/cfd_tunnel"

    def call(method: str, path: str, body=None):
        kwargs = {"headers": {"Authorization": f"Bearer {token}"}}
        if body is not None:
            kwargs.update(data=json.dumps(body), content_type="application/json")
        answer = getattr(client, method)(path.format(base=base, tunnel=tunnel.pk), **kwargs)
        assert answer.status_code == 200, answer.content
        return answer.json()["result"]

    return call


def _queries(api, method: str, path: str, body=None) -> int:
    api(method, path, body)
    with CaptureQueriesContext(connection) as queries:
        api(method, path, body)
    return len(queries)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path", "body", "pinned"),
    [
        ("get", "{base}/{tunnel}", None, 2),  # the tunnel, its live connections (the organisation is known)
        ("get", "{base}/{tunnel}/connections", None, 2),
        ("get", "{base}/{tunnel}/configurations", None, 2),  # the tunnel, the version's date
        ("get", "{base}", None, 3),  # count, page, live connections of the page
        # the tunnel; BEGIN, locked tunnel, the tunnel's routes, UPDATE, INSERT version, INSERT audit, COMMIT: no
        # zone query and no DNS plan before the transaction without a hostname, the diff from the tunnel the view
        # read (no second read of its configuration), no re-read after
        ("put", "{base}/{tunnel}/configurations", CONFIG, 8),
    ],
)
def test_request_queries_pinned(api, method, path, body, pinned):
    assert _queries(api, method, path, body) == pinned


@pytest.mark.django_db
def test_put_configuration_answers_the_saved_version(api):
    before = api("get", "{base}/{tunnel}/configurations")
    saved = api("put", "{base}/{tunnel}/configurations", CONFIG)
    assert saved["version"] == before["version"] + 1
    assert saved["config"] == CONFIG["config"]
    assert api("get", "{base}/{tunnel}/configurations") == saved


@pytest.mark.django_db
def test_create_and_delete_queries_pinned(api):
    warm = api("post", "{base}", {"name": "warm"})
    api("delete", "{base}/" + warm["id"])  # a first one of each, as the benchmark's (queries prepared)
    with CaptureQueriesContext(connection) as create:
        created = api("post", "{base}", {"name": "measured"})
    # BEGIN, name free?, INSERT tunnel, INSERT audit, COMMIT: no health read of a new tunnel, no savepoint around
    # the insert (a lost name race ends the whole create's block)
    assert len(create) == 5
    with CaptureQueriesContext(connection) as delete:
        api("delete", "{base}/" + created["id"])
    # the tunnel; BEGIN, locked tunnel, live connections, its routes, UPDATE, INSERT audit, COMMIT: no savepoint
    # without routes to delete, no health read after a delete without cascade (none can be connected)
    assert len(delete) == 8


@pytest.mark.django_db
def test_a_new_tunnel_answers_the_health_read_back(api):
    from tunnels.models import Tunnel
    from tunnels.selectors import tunnel_health, unconnected_tunnel_health

    created = api("post", "{base}", {"name": "fresh"})
    tunnel = Tunnel.objects.unscoped("test").get(pk=created["id"])
    assert unconnected_tunnel_health(tunnel=tunnel) == tunnel_health(tunnel=tunnel)
    shown = api("get", "{base}/" + created["id"])
    assert {key: created[key] for key in shown} == shown


@pytest.mark.django_db
def test_a_deleted_tunnel_answers_the_health_read_back(api, org_a):
    from tunnels.models import Tunnel

    created = api("post", "{base}", {"name": "short-lived"})
    Tunnel.objects.for_org(org_a).filter(pk=created["id"]).update(conns_active_at=timezone.now())  # once connected
    deleted = api("delete", "{base}/" + created["id"])
    assert deleted["deleted_at"] and deleted["status"] == "down"
    shown = api("get", "{base}/" + created["id"])
    assert deleted == shown
