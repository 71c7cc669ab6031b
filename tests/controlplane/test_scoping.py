"""The scoping mechanism: organisation-owned tables cannot be queried without saying for whom."""

from __future__ import annotations

import pytest
from django.apps import apps

from controlplane.models import Membership, Zone
from controlplane.scoping import OrgOwnedModel, UnscopedQueryError
from tests.factories import ZoneFactory


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
