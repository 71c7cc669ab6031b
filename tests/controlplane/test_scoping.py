"""The scoping mechanism: organisation-owned tables cannot be queried without saying for whom."""

from __future__ import annotations

import pytest
from django.apps import apps

from controlplane.models import Membership, Zone
from controlplane.scoping import OrgOwnedModel, UnscopedQueryError
from tests.factories import MembershipFactory, ZoneFactory


def org_owned_models():
    return [model for model in apps.get_models() if issubclass(model, OrgOwnedModel)]


def test_every_org_owned_model_refuses_unscoped_queries(db):
    models = org_owned_models()
    assert Zone in models and Membership in models
    for model in models:
        with pytest.raises(UnscopedQueryError):
            list(model.objects.all())
        with pytest.raises(UnscopedQueryError):
            model.objects.count()
        with pytest.raises(UnscopedQueryError):
            model.objects.filter(pk__isnull=False).exists()
        with pytest.raises(UnscopedQueryError):
            model.objects.all().update()
        with pytest.raises(UnscopedQueryError):
            model.objects.all().delete()


def test_for_org_sees_only_that_organisations_rows(org_a, org_b):
    ZoneFactory(organisation=org_a, name="a.example.com")
    ZoneFactory(organisation=org_b, name="b.example.com")
    assert [z.name for z in Zone.objects.for_org(org_a)] == ["a.example.com"]
    assert [z.name for z in Zone.objects.for_org(org_b)] == ["b.example.com"]
    assert Zone.objects.for_orgs([org_a, org_b]).count() == 2


def test_a_filter_on_organisation_counts_as_scoped_but_an_or_does_not(org_a, org_b):
    from django.db.models import Q

    ZoneFactory(organisation=org_a, name="a.example.com")
    assert Zone.objects.filter(organisation=org_a).count() == 1
    with pytest.raises(UnscopedQueryError):
        Zone.objects.filter(Q(organisation=org_a) | Q(name="b.example.com")).count()
    with pytest.raises(UnscopedQueryError):
        Zone.objects.exclude(organisation=org_a).count()


def test_unscoped_requires_a_reason(org_a):
    with pytest.raises(ValueError):
        Zone.objects.unscoped("")
    assert Zone.objects.unscoped("test").count() == 0


def test_full_clean_and_instance_operations_work_without_scope(org_a):
    zone = Zone(organisation=org_a, name="c.example.com")
    zone.full_clean()
    zone.save()
    zone.refresh_from_db()
    zone.delete()


# --- the holes a read of the guard found (issue 9): each of these passed before ---------------------------------


def test_a_filter_on_a_joined_tables_organisation_does_not_scope(org_a, admin_a):
    """`Zone.objects.filter(dns_records__organisation=…)` filters the *records'* organisation, not the zones':
    it says nothing about which zones may be read."""
    ZoneFactory(organisation=org_a, name="a.example.com")
    with pytest.raises(UnscopedQueryError):
        list(Zone.objects.filter(dns_records__organisation_id=org_a.pk))
    with pytest.raises(UnscopedQueryError):
        list(Membership.objects.filter(user__memberships__organisation=org_a))
    assert list(Membership.objects.filter(organisation=org_a, user__memberships__organisation=org_a))


def test_a_filter_that_compares_the_column_with_an_expression_or_a_subquery_does_not_scope(org_a, org_b):
    from django.db.models import F

    from controlplane.models import Organisation

    ZoneFactory(organisation=org_a, name="a.example.com")
    ZoneFactory(organisation=org_b, name="b.example.com")
    with pytest.raises(UnscopedQueryError):
        list(Zone.objects.filter(organisation=F("organisation")))
    with pytest.raises(UnscopedQueryError):
        list(Zone.objects.filter(organisation__in=Organisation.objects.all()))
    assert Zone.objects.filter(organisation__in=[org_a.pk, org_b.pk]).count() == 2


def test_a_reverse_manager_from_a_row_outside_any_organisation_refuses(org_a, org_b, admin_a):
    MembershipFactory(organisation=org_b, user=admin_a)
    with pytest.raises(UnscopedQueryError):
        list(admin_a.memberships.all())
    with pytest.raises(UnscopedQueryError):
        admin_a.memberships.count()
    assert admin_a.memberships.for_org(org_a).count() == 1
    assert admin_a.memberships.unscoped("test: the user's own memberships").count() == 2


def test_a_reverse_manager_of_an_org_owned_row_is_scoped_by_its_parent(org_a):
    from controlplane.actors import Actor
    from controlplane.services.dns import dns_record_create

    zone = ZoneFactory(organisation=org_a, name="a.example.com", status="active")
    dns_record_create(zone=zone, actor=Actor.system("test"), type="A", name="www", content="192.0.2.1")
    assert [r.name for r in zone.dns_records.all()] == ["www.a.example.com"]


def test_bulk_create_checks_every_row_has_an_organisation(org_a):
    from controlplane.scoping import OrganisationMismatch

    with pytest.raises(OrganisationMismatch):
        Zone.objects.bulk_create([Zone(organisation=org_a, name="a.example.com"), Zone(name="b.example.com")])
    assert Zone.objects.unscoped("test").count() == 0


def test_bulk_create_through_a_scoped_queryset_keeps_to_that_organisation(org_a, org_b):
    from controlplane.scoping import OrganisationMismatch

    with pytest.raises(OrganisationMismatch):
        Zone.objects.for_org(org_a).bulk_create([Zone(organisation=org_b, name="b.example.com")])
    with pytest.raises(OrganisationMismatch):
        Zone.objects.for_org(org_a).create(organisation=org_b, name="b.example.com")
    assert Zone.objects.unscoped("test").count() == 0
    Zone.objects.for_org(org_a).bulk_create([Zone(organisation=org_a, name="a.example.com")])
    assert Zone.objects.for_org(org_a).count() == 1


def test_audit_rows_are_written_only_by_the_audit_service(org_a, admin_a):
    from controlplane.actors import Actor
    from controlplane.models import AuditEvent
    from controlplane.models.audit import AuditBypassError
    from controlplane.services.audit import audit_record

    with pytest.raises(AuditBypassError):
        AuditEvent.objects.create(organisation=org_a, action="update", resource_type="x")
    with pytest.raises(AuditBypassError):
        AuditEvent.objects.bulk_create([AuditEvent(organisation=org_a, action="update", resource_type="x")])
    with pytest.raises(AuditBypassError):
        AuditEvent(organisation=org_a, action="update", resource_type="x").save()
    assert AuditEvent.objects.for_org(org_a).count() == 0
    audit_record(organisation=org_a, actor=Actor(user=admin_a), action="update", resource_type="x")
    assert AuditEvent.objects.for_org(org_a).count() == 1


def test_a_nullable_organisation_is_declared_and_never_matched_by_a_scope(org_a):
    """Only a model that names its installation-level rows may leave the organisation empty; `for_org` never
    returns them, and they are read through `installation_level()`."""
    from controlplane.models import OutboxMessage
    from controlplane.scoping import OrganisationMismatch

    nullable = [m for m in org_owned_models() if m._meta.get_field("organisation").null]
    assert nullable == [OutboxMessage]
    for model in nullable:
        assert model.installation_level_rows, f"{model.__name__} must say what its organisation-less rows are"
    for model in org_owned_models():
        if model not in nullable:
            with pytest.raises(OrganisationMismatch):
                model.objects.bulk_create([model()])
    OutboxMessage.objects.create(organisation=None, from_email="a@b", to=["c@d"], subject="reset", body="b")
    OutboxMessage.objects.create(organisation=org_a, from_email="a@b", to=["c@d"], subject="org", body="b")
    assert [m.subject for m in OutboxMessage.objects.for_org(org_a)] == ["org"]
    assert [m.subject for m in OutboxMessage.objects.installation_level()] == ["reset"]
    with pytest.raises(OrganisationMismatch):
        OutboxMessage.objects.for_org(org_a).create(organisation=None, from_email="a", to=[], subject="s", body="")
