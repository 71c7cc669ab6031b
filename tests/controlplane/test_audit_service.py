"""The audit service's one "save, turn a lost uniqueness race into a validation error, audit" step
(`save_audited`), used by the create/update services of organisations, zones, tunnels and Access's named rows."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from controlplane.actors import Actor
from controlplane.models import AuditEvent, Zone
from controlplane.services import zones as zone_services
from controlplane.services.audit import save_audited
from tests.factories import ZoneFactory

ACTOR = Actor.cli()


def test_a_lost_uniqueness_race_is_the_conflict_error_without_an_audit_row(org_a, org_b):
    ZoneFactory(organisation=org_b, name="race.example.com")
    with transaction.atomic():
        with pytest.raises(ValidationError) as excinfo:
            save_audited(
                Zone(organisation=org_a, name="race.example.com"),
                conflict={"name": "taken meanwhile"},
                organisation=org_a,
                actor=ACTOR,
                action="create",
                resource_type="zone",
                resource_name="race.example.com",
                changes={},
            )
        assert excinfo.value.message_dict == {"name": ["taken meanwhile"]}
        # The surrounding transaction is still usable: the failed insert ran in its own savepoint.
        assert Zone.objects.for_org(org_a).count() == 0
    assert not AuditEvent.objects.for_org(org_a).exists()


def test_the_services_use_it_when_their_own_check_lost_the_race(org_a, org_b, monkeypatch):
    """Both callers passed the "is the name free" check; the second insert loses in the database."""
    ZoneFactory(organisation=org_b, name="race.example.com")
    monkeypatch.setattr(zone_services, "overlapping_zones", lambda name: Zone.objects.unscoped("test").none())
    with pytest.raises(ValidationError, match="has just been added by someone else"):
        zone_services.zone_create(organisation=org_a, name="race.example.com", actor=ACTOR)
    assert not AuditEvent.objects.for_org(org_a).filter(resource_type="zone").exists()


def test_a_saved_row_is_audited_once_with_its_id(org_a):
    zone = Zone(organisation=org_a, name="fine.example.com")
    save_audited(
        zone,
        conflict={"name": "taken"},
        organisation=org_a,
        actor=ACTOR,
        action="create",
        resource_type="zone",
        resource_name=zone.name,
        changes={"name": [None, zone.name]},
    )
    [event] = AuditEvent.objects.for_org(org_a)
    assert (event.resource_id, event.changes) == (zone.pk.hex, {"name": [None, "fine.example.com"]})


@pytest.mark.parametrize("kind", ["access_group", "access_list", "access_idp"])
def test_the_access_services_use_it_when_their_own_check_lost_the_race(org_a, monkeypatch, kind):
    """Access groups and lists have unique names, the one-time PIN provider is one per organisation: a second
    writer that passed the service's check meanwhile gets the check's error, not a 500, and no audit row."""
    from access.services.directory import group_save, identity_provider_save, list_save, one_time_pin_provider
    from controlplane.scoping import OrgQuerySet

    rule = {"email_domain": {"domain": "alpha.test"}}
    save = {
        "access_group": lambda: group_save(organisation=org_a, actor=ACTOR, data={"name": "ops", "include": [rule]}),
        "access_list": lambda: list_save(organisation=org_a, actor=ACTOR, data={"name": "ops", "type": "EMAIL"}),
        "access_idp": lambda: identity_provider_save(
            organisation=org_a, actor=ACTOR, data={"name": "PIN", "type": "onetimepin"}
        ),
    }[kind]
    if kind == "access_idp":
        one_time_pin_provider(org_a)
    else:
        save()
    audited = AuditEvent.objects.for_org(org_a).filter(resource_type=kind).count()
    monkeypatch.setattr(OrgQuerySet, "exists", lambda self: False)  # both writers passed the check
    with pytest.raises(ValidationError, match="already"):
        save()
    assert AuditEvent.objects.for_org(org_a).filter(resource_type=kind).count() == audited
