"""The audit log through the SDK, with its filters."""

from __future__ import annotations

import datetime
import json

import cloudflare
import pytest
from django.utils import timezone

from controlplane.actors import Actor
from controlplane.choices import Interface
from controlplane.models import AuditEvent
from controlplane.services.audit import audit_record
from tests.controlplane.api.conftest import session_sdk
from tests.factories import UserFactory


def record(org, *, email="", ip=None, action="create", resource_type="zone", name="a.example", changes=None):
    user = UserFactory(email=email) if email else None
    actor = Actor(user=user, interface=Interface.API, ip=ip, user_agent="tests")
    return audit_record(
        organisation=org,
        actor=actor,
        action=action,
        resource_type=resource_type,
        resource_id="r1",
        resource_name=name,
        changes=changes or {},
    )


def test_an_api_change_is_in_the_log_with_who_and_from_where(sdk_a, org_a, token_a):
    zone = sdk_a.zones.create(account={"id": org_a.account_id}, name="example.com")
    [event] = list(
        sdk_a.audit_logs.list(account_id=org_a.account_id, action={"type": "create"}, zone={"name": "example.com"})
    )
    assert event.action.type == "create" and event.action.result is True
    assert event.resource.id == zone.id and event.resource.type == "zone"
    assert event.resource.name == "example.com"  # type: ignore[attr-defined]
    assert event.actor.type == "token" and event.actor.ip == "127.0.0.1"
    assert event.interface == "api"
    assert event.metadata == {"user_agent": "Cloudflare/Python 5.9.0"}
    assert event.owner.id == org_a.account_id
    assert json.loads(event.new_value) == {"name": "example.com", "status": "pending"}
    assert json.loads(event.old_value) == {"name": None, "status": None}
    assert event.changes == {"name": [None, "example.com"], "status": [None, "pending"]}  # type: ignore[attr-defined]
    assert event.when is not None


def test_filters(sdk_a, org_a, org_b):
    record(org_a, email="ann@alpha.test", ip="10.1.2.3", action="create", name="a.example")
    record(org_a, email="bob@alpha.test", ip="10.1.9.9", action="update", resource_type="member", name="x")
    record(org_a, ip="192.168.0.7", action="delete", name="b.example")
    record(org_b, email="ann@alpha.test", ip="10.1.2.3")
    ids = lambda **kw: [e.resource.name for e in sdk_a.audit_logs.list(account_id=org_a.account_id, **kw)]  # type: ignore[attr-defined]  # noqa: E731
    everything = ids(hide_user_logs=False)
    assert len(everything) == 4  # three recorded here, and the token's creation
    assert ids(actor={"email": "ANN@alpha.test"}) == ["a.example"]
    assert ids(actor={"ip": "10.1.2.3"}) == ["a.example"]
    assert sorted(ids(actor={"ip": "10.1.0.0/16"})) == ["a.example", "x"]
    assert sorted(ids(actor={"ip": "10.1.2.0/23"})) == ["a.example"]
    assert ids(actor={"ip": "192.168.0.0/22"}) == ["b.example"]
    assert ids(action={"type": "update"}) == ["x"]
    assert ids(zone={"name": "b.example"}) == ["b.example"]
    assert ids(extra_query={"resource.type": "member"}) == ["x"]
    assert ids(direction="asc")[0] == "test token"
    assert ids(direction="desc")[0] == "b.example"
    assert "a.example" not in ids(hide_user_logs=True)
    tomorrow = (timezone.now() + datetime.timedelta(days=1)).date()
    assert ids(since=tomorrow) == []
    assert len(ids(before=tomorrow)) == 4
    first = AuditEvent.objects.for_org(org_a).order_by("created_at").first()
    assert ids(id=first.id.hex) == ["test token"]


def test_pages(sdk_a, org_a):
    for index in range(7):
        record(org_a, name=f"z{index}.example")
    assert len(list(sdk_a.audit_logs.list(account_id=org_a.account_id, per_page=3))) == 8
    assert sdk_a.audit_logs.list(account_id=org_a.account_id, per_page=3, page=4).result == []


@pytest.mark.parametrize(
    ("query", "pointer"),
    [
        ({"since": "yesterday"}, "/since"),
        ({"before": "2024-13-45"}, "/before"),
        ({"since": "2024-05-02", "before": "2024-05-01"}, "/before"),
        ({"actor.ip": "10.0.0.300"}, "/actor.ip"),
        ({"actor.ip": "2001:db8::/32"}, "/actor.ip"),
        ({"action.type": "explode"}, "/action.type"),
        ({"direction": "sideways"}, "/direction"),
        ({"id": "nope"}, "/id"),
        ({"page": "two"}, "/page"),
        ({"per_page": "0"}, "/per_page"),
    ],
)
def test_bad_filters_name_the_parameter(sdk_a, org_a, query, pointer):
    with pytest.raises(cloudflare.BadRequestError) as error:
        list(sdk_a.audit_logs.list(account_id=org_a.account_id, extra_query=query))
    assert [e.source.pointer for e in error.value.errors] == [pointer]


def test_the_audit_log_is_read_only_and_needs_audit_access(make_sdk, org_a, admin_a):
    client = make_sdk(org_a, {"tunnels": "read"})
    with pytest.raises(cloudflare.PermissionDeniedError):
        list(client.audit_logs.list(account_id=org_a.account_id))
    with pytest.raises(cloudflare.APIStatusError) as error:
        session_sdk(admin_a).post(f"/accounts/{org_a.account_id}/audit_logs", body={}, cast_to=object)
    assert error.value.status_code == 405
