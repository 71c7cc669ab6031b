"""Zones through the SDK: the list spans the caller's accounts; a zone is found only among them."""

from __future__ import annotations

import cloudflare
import pytest

from controlplane.actors import Actor
from controlplane.choices import ZoneStatus
from controlplane.models import AuditEvent, Zone
from controlplane.services.zones import zone_create
from tests.controlplane.api.conftest import session_sdk
from tests.controlplane.test_zones import TxtServer
from tests.factories import MembershipFactory, ZoneFactory


@pytest.fixture
def dns_server(settings):
    server = TxtServer().start()
    settings.ZONE_VERIFICATION_NAMESERVERS = [f"127.0.0.1:{server.port}"]
    try:
        yield server
    finally:
        server.stop()


def test_create_get_list_delete(sdk_a, org_a):
    zone = sdk_a.zones.create(account={"id": org_a.account_id}, name="Example.COM")
    assert (zone.name, zone.status, zone.type, zone.paused) == ("example.com", "pending", "full", False)
    assert zone.account.id == org_a.account_id and zone.account.name == "Alpha"
    assert len(zone.id) == 32
    stored = Zone.objects.for_org(org_a).get()
    assert zone.verification == {  # type: ignore[attr-defined]
        "type": "txt",
        "name": "_zt-verify.example.com",
        "value": stored.verification_record_value,
        "last_checked_on": None,
        "last_error": "",
    }
    assert sdk_a.zones.get(zone_id=zone.id).name == "example.com"
    assert [z.id for z in sdk_a.zones.list()] == [zone.id]
    assert sdk_a.zones.delete(zone_id=zone.id).id == zone.id
    assert not Zone.objects.for_org(org_a).exists()
    assert AuditEvent.objects.for_org(org_a).filter(resource_type="zone", action="delete").count() == 1
    with pytest.raises(cloudflare.NotFoundError):
        sdk_a.zones.get(zone_id=zone.id)


def test_activation_check_activates_once_the_record_is_published(sdk_a, org_a, dns_server):
    zone = sdk_a.zones.create(account={"id": org_a.account_id}, name="example.com")
    assert sdk_a.zones.activation_check.trigger(zone_id=zone.id).id == zone.id
    pending = sdk_a.zones.get(zone_id=zone.id)
    assert pending.status == "pending"
    assert "No TXT record" in pending.verification["last_error"]  # type: ignore[attr-defined]

    dns_server.records["_zt-verify.example.com"] = [pending.verification["value"]]  # type: ignore[attr-defined]
    sdk_a.zones.activation_check.trigger(zone_id=zone.id)
    active = sdk_a.zones.get(zone_id=zone.id)
    assert active.status == "active" and active.activated_on is not None
    assert list(sdk_a.zones.list(status="active"))[0].id == zone.id


def test_list_filters_pages_and_orders(sdk_a, org_a):
    for name in ["b.example", "a.example", "c.example", "shop.d.example"]:
        ZoneFactory(organisation=org_a, name=name, status=ZoneStatus.PENDING if name == "c.example" else "active")
    names = lambda **kw: [z.name for z in sdk_a.zones.list(**kw)]  # noqa: E731
    assert names() == ["a.example", "b.example", "c.example", "shop.d.example"]
    assert names(per_page=1) == names()  # auto-iteration across pages
    assert sdk_a.zones.list(page=3, per_page=2).result == []  # a page past the end
    assert names(direction="desc")[0] == "shop.d.example"
    assert names(name="b.example") == ["b.example"]
    assert names(name="contains:d.ex") == ["shop.d.example"]
    assert names(name="starts_with:a") == ["a.example"]
    assert names(status="pending") == ["c.example"]
    assert names(account={"id": org_a.account_id}, per_page=50) == names()
    assert names(account={"name": "Alpha"}) == names()
    assert names(account={"id": "0" * 32}) == []
    assert names(account={"id": "junk"}) == []
    assert names(type=["partial"]) == []
    assert names(order="status", direction="asc")[0] == "a.example"
    assert names(match="any", name="a.example", status="pending") == ["a.example", "c.example"]


def test_a_user_sees_the_zones_of_all_their_accounts(admin_a, org_a, org_b):
    MembershipFactory(organisation=org_b, user=admin_a)
    ZoneFactory(organisation=org_a, name="a.example")
    ZoneFactory(organisation=org_b, name="b.example")
    ZoneFactory(name="other.example")  # another organisation altogether
    client = session_sdk(admin_a)
    assert [z.name for z in client.zones.list()] == ["a.example", "b.example"]
    assert [z.name for z in client.zones.list(account={"id": org_b.account_id})] == ["b.example"]
    assert [z.name for z in client.zones.list(order="account.name", direction="desc")] == ["b.example", "a.example"]


def test_other_tenants_zones_are_not_found(sdk_a, org_b):
    theirs = ZoneFactory(organisation=org_b, name="theirs.example")
    assert list(sdk_a.zones.list(name="theirs.example")) == []
    for call in (
        lambda: sdk_a.zones.get(zone_id=theirs.id.hex),
        lambda: sdk_a.zones.edit(zone_id=theirs.id.hex, paused=False),
        lambda: sdk_a.zones.delete(zone_id=theirs.id.hex),
        lambda: sdk_a.zones.activation_check.trigger(zone_id=theirs.id.hex),
        lambda: sdk_a.zones.get(zone_id="not-hex"),
    ):
        with pytest.raises(cloudflare.NotFoundError):
            call()
    assert Zone.objects.for_org(org_b).filter(pk=theirs.pk).exists()


def test_creating_in_another_account_is_not_found_and_a_reader_is_forbidden(sdk_a, org_a, org_b, reader_a):
    with pytest.raises(cloudflare.NotFoundError):
        sdk_a.zones.create(account={"id": org_b.account_id}, name="x.example")
    with pytest.raises(cloudflare.NotFoundError):
        sdk_a.zones.create(account={"id": "nope"}, name="x.example")
    with pytest.raises(cloudflare.PermissionDeniedError):
        session_sdk(reader_a).zones.create(account={"id": org_a.account_id}, name="x.example")
    assert not Zone.objects.unscoped("test").exists()


def test_edit_accepts_only_what_a_zone_is(sdk_a, org_a):
    zone = ZoneFactory(organisation=org_a, name="a.example")
    assert sdk_a.zones.edit(zone_id=zone.id.hex, paused=False, type="full").name == "a.example"
    assert sdk_a.zones.edit(zone_id=zone.id.hex).name == "a.example"
    for kwargs, pointer in [
        ({"paused": True}, "/paused"),
        ({"type": "partial"}, "/type"),
        ({"vanity_name_servers": ["ns1.example"]}, "/vanity_name_servers"),
        ({"extra_body": {"paused": "maybe"}}, "/paused"),
    ]:
        with pytest.raises(cloudflare.BadRequestError) as error:
            sdk_a.zones.edit(zone_id=zone.id.hex, **kwargs)
        assert error.value.errors[0].source.pointer == pointer


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"name": "example.com"}, "/account"),
        ({"account": {}, "name": "example.com"}, "/account/id"),
        ({"account": "abc", "name": "example.com"}, "/account"),
        ({"account": {"id": "ACC"}, "name": "localhost"}, "/name"),
        ({"account": {"id": "ACC"}, "name": ""}, "/name"),
        ({"account": {"id": "ACC"}, "name": 5}, "/name"),
        ({"account": {"id": "ACC"}, "name": "example.com", "type": "partial"}, "/type"),
        ({"account": {"id": "ACC"}, "name": "taken.example"}, "/name"),
        ({"account": {"id": "ACC"}, "name": "www.taken.example"}, "/name"),
    ],
)
def test_invalid_zones_name_the_field(sdk_a, org_a, org_b, body, pointer):
    zone_create(organisation=org_b, name="taken.example", actor=Actor.cli())
    if isinstance(body.get("account"), dict) and body["account"].get("id") == "ACC":
        body["account"]["id"] = org_a.account_id
    with pytest.raises(cloudflare.BadRequestError) as error:
        sdk_a.post("/zones", body=body, cast_to=object)
    assert [e.source.pointer for e in error.value.errors if e.source] == [pointer]
    assert not Zone.objects.for_org(org_a).exists()


def test_zone_access_follows_the_token_grants(make_sdk, org_a):
    zone = ZoneFactory(organisation=org_a, name="a.example")
    no_zones = make_sdk(org_a, {"tunnels": "edit"})
    with pytest.raises(cloudflare.PermissionDeniedError):
        list(no_zones.zones.list())
    with pytest.raises(cloudflare.PermissionDeniedError):
        no_zones.zones.get(zone_id=zone.id.hex)
    reader = make_sdk(org_a, {"zones": "read"})
    assert reader.zones.get(zone_id=zone.id.hex).name == "a.example"
    with pytest.raises(cloudflare.PermissionDeniedError):
        reader.zones.delete(zone_id=zone.id.hex)
    with pytest.raises(cloudflare.PermissionDeniedError):
        reader.zones.activation_check.trigger(zone_id=zone.id.hex)
    with pytest.raises(cloudflare.PermissionDeniedError):
        reader.zones.create(account={"id": org_a.account_id}, name="b.example")
    assert Zone.objects.for_org(org_a).count() == 1
