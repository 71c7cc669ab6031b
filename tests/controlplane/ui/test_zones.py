"""Zones in the UI: add with inline errors, verification instructions, check now, delete."""

from __future__ import annotations

from unittest import mock

from controlplane.choices import ZoneStatus
from controlplane.models import Zone
from tests.factories import ZoneFactory


def zones_url(org):
    return f"/o/{org.account_id}/zones/"


def test_add_zone_then_see_the_txt_record_to_publish(admin_client, org_a, settings):
    settings.ZONES_AUTO_VERIFY = False
    response = admin_client.post(zones_url(org_a), {"name": " Example.COM. "})
    zone = Zone.objects.for_org(org_a).get()
    assert zone.name == "example.com" and zone.status == ZoneStatus.PENDING
    assert response.url == f"{zones_url(org_a)}{zone.id.hex}/"
    html = admin_client.get(response.url).content.decode()
    assert zone.verification_record_name in html and zone.verification_record_value in html
    assert "Pending verification" in html and "Check now" in html


def test_add_zone_errors_are_inline(admin_client, org_a, org_b):
    ZoneFactory(organisation=org_b, name="taken.example")
    for name, message in [
        ("", "This field is required."),
        ("localhost", "not a fully qualified domain name"),
        ("sub.taken.example", "belongs to another organisation"),
    ]:
        response = admin_client.post(zones_url(org_a), {"name": name})
        assert response.status_code == 200 and message in response.content.decode(), name
    assert not Zone.objects.for_org(org_a).exists()


def test_check_now_activates_when_the_record_is_there_and_explains_when_not(admin_client, org_a):
    zone = ZoneFactory(organisation=org_a, name="check.example", status=ZoneStatus.PENDING)
    url = f"{zones_url(org_a)}{zone.id.hex}/"
    with mock.patch("controlplane.services.zones.lookup_verification", return_value=(False, "No TXT record exists.")):
        response = admin_client.post(url + "check/", follow=True)
    assert "Not verified yet. No TXT record exists." in response.content.decode()
    with mock.patch("controlplane.services.zones.lookup_verification", return_value=(True, "")):
        response = admin_client.post(url + "check/", follow=True)
    assert "is verified and active" in response.content.decode()
    zone.refresh_from_db()
    assert zone.status == ZoneStatus.ACTIVE


def test_delete_zone(admin_client, org_a):
    zone = ZoneFactory(organisation=org_a, name="bye.example")
    response = admin_client.post(f"{zones_url(org_a)}{zone.id.hex}/delete/")
    assert response.url == zones_url(org_a)
    assert not Zone.objects.for_org(org_a).exists()


def test_list_shows_status_badges(reader_client, org_a):
    ZoneFactory(organisation=org_a, name="ok.example", status=ZoneStatus.ACTIVE)
    ZoneFactory(organisation=org_a, name="wait.example", status=ZoneStatus.PENDING)
    html = reader_client.get(zones_url(org_a)).content.decode()
    assert "ok.example" in html and "wait.example" in html
    assert "badge-green" in html and "badge-amber" in html
    assert "Add a zone" not in html  # read-only members get no form
