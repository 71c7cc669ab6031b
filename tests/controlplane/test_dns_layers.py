"""The DNS records' link to tunnels after issue 9: generic `managed_by`, registered by tunnels, never imported by
the core; the migration keeps every existing link; one delete service with one audit shape for every caller."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from controlplane.actors import Actor
from controlplane.models import AuditEvent, DnsRecord
from controlplane.services.dns import dns_record_create, dns_record_delete, dns_records_changed
from tests.factories import ZoneFactory
from tunnels.services import tunnel_config_update, tunnel_create, tunnel_delete

ACTOR = Actor.cli()


def _ingress(*hostnames: str) -> dict:
    return {
        "ingress": [
            *({"hostname": h, "service": "http://localhost:1"} for h in hostnames),
            {"service": "http_status:404"},
        ]
    }


@pytest.fixture
def zone(org_a):
    return ZoneFactory(organisation=org_a, name="example.com", status="active")


def test_a_cname_into_the_tunnel_domain_is_managed_by_the_tunnel_through_the_registration(org_a, zone):
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=ACTOR)
    record = dns_record_create(zone=zone, actor=ACTOR, type="CNAME", name="app", content=tunnel.cname_target)
    assert (record.managed_by, record.managed_by_id) == ("tunnel", tunnel.pk)
    plain = dns_record_create(zone=zone, actor=ACTOR, type="CNAME", name="www", content="elsewhere.example.net")
    assert (plain.managed_by, plain.managed_by_id) == ("", None)


def test_every_change_of_a_record_is_announced_to_registered_receivers(org_a, zone):
    seen = []

    def receiver(*, organisation_id, **_):
        seen.append(organisation_id)

    dns_records_changed.connect(receiver)
    try:
        record = dns_record_create(zone=zone, actor=ACTOR, type="A", name="a", content="192.0.2.1")
        dns_record_delete(record=record, actor=ACTOR)
    finally:
        dns_records_changed.disconnect(receiver)
    assert seen == [org_a.pk, org_a.pk]


def _delete_shapes(org) -> list[tuple]:
    return sorted(
        (e.resource_name, tuple(sorted(e.changes)))
        for e in AuditEvent.objects.for_org(org).filter(resource_type="dns_record", action="delete")
    )


def test_a_routed_record_is_refused_by_the_dns_api_and_deletions_by_its_tunnel_are_audited(org_a, zone):
    """The DNS API cannot delete a record a tunnel's configuration routes (issue 14, item 12); the tunnel's own
    deletions (a hostname dropped from the configuration, the tunnel deleted) are audited."""
    from django.core.exceptions import ValidationError

    tunnel = tunnel_create(organisation=org_a, name="lab", actor=ACTOR)
    tunnel_config_update(tunnel=tunnel, config=_ingress("a.example.com", "b.example.com"), actor=ACTOR)
    with pytest.raises(ValidationError, match="managed by tunnel “lab”"):
        dns_record_delete(record=DnsRecord.objects.for_org(org_a).get(name="a.example.com"), actor=ACTOR)
    tunnel_config_update(tunnel=tunnel, config=_ingress("b.example.com"), actor=ACTOR)
    tunnel_delete(tunnel=tunnel, actor=ACTOR)
    names = [name for name, _fields in _delete_shapes(org_a)]
    assert names == ["a.example.com CNAME", "b.example.com CNAME"]
    assert not DnsRecord.objects.for_org(org_a).exists()


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_every_records_tunnel(org_a):
    """0004 copies DnsRecord.tunnel into managed_by/managed_by_id, and back when reversed."""
    before, after = (
        [("controlplane", "0003_dnsrecord_tunnel_dnsrecord_zone_and_more")],
        [("controlplane", "0004_dnsrecord_managed_by")],
    )
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=ACTOR)
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    zone = old.get_model("controlplane", "Zone")._base_manager.create(
        organisation_id=org_a.pk, name="example.com", status="active"
    )
    Record = old.get_model("controlplane", "DnsRecord")
    routed = Record._base_manager.create(
        id=uuid.uuid4(),
        organisation_id=org_a.pk,
        zone=zone,
        type="CNAME",
        name="app.example.com",
        content=tunnel.cname_target,
        tunnel_id=tunnel.pk,
    )
    plain = Record._base_manager.create(
        id=uuid.uuid4(), organisation_id=org_a.pk, zone=zone, type="A", name="www.example.com", content="192.0.2.1"
    )
    executor = MigrationExecutor(connection)
    executor.migrate(after)
    new = executor.loader.project_state(after).apps.get_model("controlplane", "DnsRecord")
    rows = dict(new._base_manager.values_list("pk", "managed_by_id"))
    assert rows == {routed.pk: tunnel.pk, plain.pk: None}
    assert new._base_manager.get(pk=routed.pk).managed_by == "tunnel"
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    back = executor.loader.project_state(before).apps.get_model("controlplane", "DnsRecord")
    assert dict(back._base_manager.values_list("pk", "tunnel_id")) == {routed.pk: tunnel.pk, plain.pk: None}
    MigrationExecutor(connection).migrate(executor.loader.graph.leaf_nodes())
