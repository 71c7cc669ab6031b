"""Bad input of every shape, on every API route and method, is a 4xx envelope: never a 500."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from tests.conftest import make_token
from tests.controlplane.test_isolation import API_ROUTES, World, build_url

BAD_BODIES = [
    b"",
    b"{",
    b"[]",
    b'"text"',
    b"null",
    b"42",
    json.dumps({"name": {"nested": [1]}, "email": 5, "roles": {"id": None}, "account": [], "policies": {}}).encode(),
    json.dumps(
        {
            "name": "x" * 5000,
            "roles": [{"id": ["admin"]}],
            "policies": [{"effect": None, "permission_groups": "zones.read", "resources": []}],
            "condition": {"request_ip": {"in": "10.0.0.0/8"}},
            "expires_on": 12,
            "not_before": [],
            "settings": "on",
            "paused": {},
            "type": 3,
            "status": False,
            "config": "x",
        }
    ).encode(),
]
BAD_QUERY = (
    "?page=x&per_page=-1&direction=zz&order=zz&status=zz&since=zz&before=0&account.id=zz&account.name=&"
    "actor.ip=zz&actor.email=&action.type=zz&include_expired=maybe&hide_user_logs=2&type=zz&match=zz&name=%00"
)


@pytest.fixture
def world(org_a, admin_a, reader_a) -> World:
    return World(org_a, admin_a)


@pytest.mark.parametrize("route", API_ROUTES, ids=str)
def test_bad_input_is_never_a_500(route, world, admin_a, org_a):
    url = build_url(route, world)
    session = Client()
    session.force_login(admin_a)
    token = Client(headers={"Authorization": f"Bearer {make_token(org_a)}"})
    failures = []
    for client in (session, token):
        for method in ("POST", "PUT", "PATCH"):
            for body in BAD_BODIES:
                response = client.generic(method, url, data=body, content_type="application/json")
                if response.status_code >= 500:
                    failures.append(f"{method} {url} {body[:60]!r}: {response.status_code}")
        for parameter in BAD_QUERY.lstrip("?").split("&"):  # one at a time, so each reaches its parser
            response = client.get(f"{url}?{parameter}")
            if response.status_code >= 500:
                failures.append(f"GET {url}?{parameter}: {response.status_code}")
    assert not failures, "\n".join(failures)
