"""DNS records under zones, driven by the official SDK."""

from __future__ import annotations

import cloudflare
import pytest

from controlplane.actors import Actor
from controlplane.models import AuditEvent
from controlplane.services.zones import zone_create, zone_mark_verified
from tests.conftest import make_token
from tests.sdk import sdk_client
from tunnels.services import tunnel_create


@pytest.fixture
def zone(org_a):
    return zone_mark_verified(
        zone=zone_create(organisation=org_a, name="example.com", actor=Actor.cli()), actor=Actor.cli()
    )


@pytest.fixture
def cf(token_a):
    return sdk_client(token_a)


def test_crud(cf, org_a, zone):
    records = cf.dns.records
    created = records.create(zone_id=zone.id.hex, type="A", name="www", content="192.0.2.10", ttl=300, comment="web")
    assert created.name == "www.example.com" and created.content == "192.0.2.10" and created.ttl == 300
    apex = records.create(zone_id=zone.id.hex, type="TXT", name="@", content="v=spf1 -all", ttl=1)
    assert apex.name == "example.com"
    listed = [r.name for r in records.list(zone_id=zone.id.hex)]
    assert listed == ["example.com", "www.example.com"]
    assert [r.name for r in records.list(zone_id=zone.id.hex, type="A")] == ["www.example.com"]
    assert [r.name for r in records.list(zone_id=zone.id.hex, name={"exact": "www.example.com"})] == ["www.example.com"]
    assert [r.name for r in records.list(zone_id=zone.id.hex, name={"contains": "ww"})] == ["www.example.com"]
    got = records.get(created.id, zone_id=zone.id.hex)
    assert got.comment == "web"
    edited = records.edit(created.id, zone_id=zone.id.hex, type="A", name="www", content="192.0.2.11", ttl=1)
    assert edited.content == "192.0.2.11"
    replaced = records.update(created.id, zone_id=zone.id.hex, type="AAAA", name="www", content="2001:db8::1", ttl=120)
    assert replaced.type == "AAAA" and replaced.ttl == 120
    assert records.delete(created.id, zone_id=zone.id.hex).id == created.id
    with pytest.raises(cloudflare.NotFoundError):
        records.get(created.id, zone_id=zone.id.hex)
    actions = list(
        AuditEvent.objects.for_org(org_a).filter(resource_type="dns_record").values_list("action", flat=True)
    )
    assert sorted(actions) == ["create", "create", "delete", "update", "update"]


@pytest.mark.parametrize(
    "body,field",
    [
        ({"type": "A", "name": "x", "content": "not-an-ip", "ttl": 1}, "/content"),
        ({"type": "AAAA", "name": "x", "content": "192.0.2.1", "ttl": 1}, "/content"),
        ({"type": "A", "name": "x", "content": "192.0.2.1", "ttl": 5}, "/ttl"),
        ({"type": "SPF", "name": "x", "content": "x", "ttl": 1}, "/type"),
        ({"type": "CNAME", "name": "x", "content": "bad name!", "ttl": 1}, "/content"),
    ],
)
def test_invalid_records_name_the_field(cf, zone, body, field):
    with pytest.raises(cloudflare.BadRequestError) as excinfo:
        cf.post(f"/zones/{zone.id.hex}/dns_records", body=body, cast_to=object)
    assert excinfo.value.errors[0].source.pointer == field


def test_a_cname_stands_alone(cf, zone):
    cf.dns.records.create(zone_id=zone.id.hex, type="A", name="app", content="192.0.2.1", ttl=1)
    with pytest.raises(cloudflare.BadRequestError) as excinfo:
        cf.dns.records.create(zone_id=zone.id.hex, type="CNAME", name="app", content="target.example.org", ttl=1)
    assert "CNAME must stand alone" in str(excinfo.value.body)


def test_a_cname_into_the_tunnel_domain_must_name_our_tunnel(cf, org_a, org_b, zone):
    ours = tunnel_create(organisation=org_a, name="ours", actor=Actor.cli())
    theirs = tunnel_create(organisation=org_b, name="theirs", actor=Actor.cli())
    record = cf.dns.records.create(zone_id=zone.id.hex, type="CNAME", name="app", content=ours.cname_target, ttl=1)
    assert record.meta.model_extra == {"tunnel_id": str(ours.id)}
    with pytest.raises(cloudflare.BadRequestError) as excinfo:
        cf.dns.records.create(zone_id=zone.id.hex, type="CNAME", name="evil", content=theirs.cname_target, ttl=1)
    assert "No tunnel" in str(excinfo.value.body)


def test_other_accounts_zones_are_not_found(zone, org_b):
    other = sdk_client(make_token(org_b))
    with pytest.raises(cloudflare.NotFoundError):
        list(other.dns.records.list(zone_id=zone.id.hex))
    with pytest.raises(cloudflare.NotFoundError):
        other.dns.records.create(zone_id=zone.id.hex, type="A", name="x", content="192.0.2.1", ttl=1)


def test_read_only_tokens_cannot_write(org_a, zone):
    reader = sdk_client(make_token(org_a, {"zones": "read"}))
    assert list(reader.dns.records.list(zone_id=zone.id.hex)) == []
    with pytest.raises(cloudflare.PermissionDeniedError):
        reader.dns.records.create(zone_id=zone.id.hex, type="A", name="x", content="192.0.2.1", ttl=1)


def test_a_tunnels_public_hostname_record_is_managed_by_the_tunnel(cf, org_a, zone):
    """Renaming, retargeting or deleting a tunnel's CNAME through the DNS API would leave DNS out of step with the
    tunnel's configuration (issue 14, item 12): refused, naming the tunnel and what to do instead."""
    from controlplane.models import DnsRecord
    from tunnels.services import tunnel_config_update

    tunnel = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    config = {
        "ingress": [{"hostname": "app.example.com", "service": "http://localhost:1"}, {"service": "http_status:404"}]
    }
    tunnel_config_update(tunnel=tunnel, config=config, actor=Actor.cli())
    record = DnsRecord.objects.for_org(org_a).get(name="app.example.com")
    rid, zid = record.id.hex, zone.id.hex
    attempts = [
        lambda: cf.dns.records.edit(rid, zone_id=zid, type="CNAME", name="other", content=tunnel.cname_target, ttl=1),
        lambda: cf.dns.records.edit(rid, zone_id=zid, type="CNAME", name="app", content="elsewhere.example.org", ttl=1),
        lambda: cf.dns.records.update(rid, zone_id=zid, type="A", name="app", content="192.0.2.1", ttl=1),
        lambda: cf.dns.records.edit(
            rid, zone_id=zid, type="CNAME", name="app", content=tunnel.cname_target, proxied=False, ttl=1
        ),
        lambda: cf.dns.records.delete(rid, zone_id=zid),
    ]
    for attempt in attempts:
        with pytest.raises(cloudflare.BadRequestError) as excinfo:
            attempt()
        message = str(excinfo.value.body)
        assert "managed by tunnel “lab”" in message and "app.example.com" in message
        assert "Remove the public hostname from the tunnel instead" in message
    kept = DnsRecord.objects.for_org(org_a).get(pk=record.pk)
    assert (kept.name, kept.type, kept.content, kept.proxied) == ("app.example.com", "CNAME", tunnel.cname_target, True)
    # A note on the record changes nothing the tunnel depends on.
    noted = cf.dns.records.edit(
        rid, zone_id=zid, type="CNAME", name="app", content=tunnel.cname_target, comment="x", ttl=1
    )
    assert noted.comment == "x"
    # Once the tunnel no longer routes the name, its record goes with it.
    tunnel_config_update(tunnel=tunnel, config={"ingress": [{"service": "http_status:404"}]}, actor=Actor.cli())
    assert not DnsRecord.objects.for_org(org_a).filter(name="app.example.com").exists()


def test_a_cname_to_a_tunnel_that_no_public_hostname_uses_stays_editable(cf, org_a, zone):
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    record = cf.dns.records.create(zone_id=zone.id.hex, type="CNAME", name="app", content=tunnel.cname_target, ttl=1)
    assert cf.dns.records.delete(record.id, zone_id=zone.id.hex).id == record.id
