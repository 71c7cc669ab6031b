"""The Access pages of the dashboard: every page for an admin and a read-only member (the organisation requires
2FA, as by default, and the sessions have passed it), the wizard and the editors through their forms, errors
beside their fields, another organisation's ids → 404, and a service token's secret shown once."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from access.models import AccessGroup, AccessList, Application, Policy, ServiceToken
from access.services.applications import application_save
from access.services.directory import group_save, list_save, one_time_pin_provider, service_token_create
from access.services.policies import policy_save
from controlplane.actors import Actor
from controlplane.models import AuditEvent
from controlplane.services.zones import zone_create, zone_mark_verified
from tests.controlplane.ui.conftest import add_second_factor, sign_in


@pytest.fixture(autouse=True)
def require_2fa(org_a, org_b):
    for org in (org_a, org_b):
        org.require_2fa = True
        org.save(update_fields=["require_2fa"])


@pytest.fixture
def admin(client, admin_a):
    return sign_in(client, admin_a, device=add_second_factor(admin_a))


@pytest.fixture
def reader(client, reader_a):
    return sign_in(client, reader_a, device=add_second_factor(reader_a))


@pytest.fixture
def zone(org_a):
    return zone_mark_verified(
        zone=zone_create(organisation=org_a, name="example.com", actor=Actor.cli()), actor=Actor.cli()
    )


@pytest.fixture
def world(org_a, zone):
    """One of everything in organisation A."""
    actor = Actor.cli()
    policy = policy_save(
        organisation=org_a,
        actor=actor,
        data={"name": "Staff", "decision": "allow", "include": [{"email_domain": {"domain": "example.com"}}]},
    )
    app = application_save(
        organisation=org_a,
        actor=actor,
        data={"name": "Wiki", "domain": "wiki.example.com", "policies": [str(policy.pk)]},
    )
    group = group_save(
        organisation=org_a, actor=actor, data={"name": "Ops", "include": [{"email": {"email": "ops@example.com"}}]}
    )
    access_list = list_save(
        organisation=org_a, actor=actor, data={"name": "Office", "type": "IP", "items": [{"value": "203.0.113.0/24"}]}
    )
    token, _ = service_token_create(organisation=org_a, actor=actor, data={"name": "CI"})
    return {"app": app, "policy": policy, "group": group, "list": access_list, "token": token}


def url(name, org, *args):
    return reverse(f"ui:{name}", args=[org.account_id, *args])


def page_urls(org, world):
    return [
        url("access", org),
        url("access-app-create", org),
        url("access-app", org, world["app"].pk.hex),
        url("access-app-edit", org, world["app"].pk.hex),
        url("access-app-delete", org, world["app"].pk.hex),
        url("access-policies", org),
        url("access-policy-create", org),
        url("access-policy", org, world["policy"].pk.hex),
        url("access-policy-delete", org, world["policy"].pk.hex),
        url("access-groups", org),
        url("access-group-create", org),
        url("access-group", org, world["group"].pk.hex),
        url("access-group-delete", org, world["group"].pk.hex),
        url("access-lists", org),
        url("access-list-create", org),
        url("access-list", org, world["list"].pk.hex),
        url("access-list-delete", org, world["list"].pk.hex),
        url("access-service-tokens", org),
        url("access-service-token-created", org, world["token"].pk.hex),
        url("access-service-token-delete", org, world["token"].pk.hex),
        url("access-tester", org),
        url("access-tester", org) + "?email=ana%40example.com",
        url("access-logs", org),
        url("access-settings", org),
    ]


def test_every_page_renders_for_an_admin(admin, org_a, world):
    for address in page_urls(org_a, world):
        response = admin.get(address)
        assert response.status_code == 200, address
        page = response.content.decode()
        assert "<script>" not in page and not re.search(r"\son[a-z]+=", page), address


def test_read_only_members_see_every_page_but_no_write_buttons_and_cannot_post(reader, org_a, world):
    for address in page_urls(org_a, world):
        assert reader.get(address).status_code == 200, address
    page = reader.get(url("access", org_a)).content.decode()
    assert "Wiki" in page and "Add an application" not in page
    assert "Rotate secret" not in reader.get(url("access-service-tokens", org_a)).content.decode()
    assert "Revoke existing tokens" not in reader.get(url("access-app", org_a, world["app"].pk.hex)).content.decode()
    edit = reader.get(url("access-app-edit", org_a, world["app"].pk.hex)).content.decode()
    assert "Save application" not in edit and "<fieldset disabled>" in edit
    assert "Save policy" not in reader.get(url("access-policy", org_a, world["policy"].pk.hex)).content.decode()
    settings_page = reader.get(url("access-settings", org_a)).content.decode()
    assert "Rotate now" not in settings_page and "Revoke sessions" not in settings_page
    response = reader.post(url("access-app-delete", org_a, world["app"].pk.hex))
    assert response.status_code == 403
    response = reader.post(url("access-policies", org_a))
    assert response.status_code in (403, 405)
    assert Application.objects.for_org(org_a).count() == 1


def test_pages_need_the_second_factor(client, admin_a, org_a, world):
    sign_in(client, admin_a)  # password only
    response = client.get(url("access", org_a))
    assert response.status_code == 302 and "two-factor" in response["Location"]


def test_the_empty_list_says_what_to_do_next(admin, org_a, zone):
    page = admin.get(url("access", org_a)).content.decode()
    assert "No applications yet" in page and "Add an application" in page


def test_without_an_active_zone_the_empty_list_points_to_zones(admin, org_a):
    page = admin.get(url("access", org_a)).content.decode()
    assert "Add and verify a zone" in page


def wizard_data(**extra):
    data = {
        "name": "Portainer",
        "session_duration": "168h",
        "dest_0_subdomain": "portainer",
        "dest_0_zone": "example.com",
        "dest_0_path": "",
        "policy_name": "Only me",
        "decision": "allow",
        "policy_session_duration": "",
        "include_0_selector": "email",
        "include_0_values": "ana@example.com",
    }
    data.update(extra)
    return data


def test_the_wizard_adds_an_application_with_a_new_policy(admin, org_a, admin_a, zone):
    otp = one_time_pin_provider(org_a)
    response = admin.post(url("access-app-create", org_a), wizard_data(idps=[str(otp.pk)]), follow=True)
    assert response.status_code == 200
    app = Application.objects.for_org(org_a).get()
    assert app.name == "Portainer" and app.session_duration == "168h"
    assert app.destinations == [{"type": "public", "uri": "portainer.example.com"}]
    assert app.allowed_idps == [str(otp.pk)]
    policy = Policy.objects.for_org(org_a).get(application=app)
    assert policy.reusable is False and policy.include == [{"email": {"email": "ana@example.com"}}]
    page = response.content.decode()
    assert "Application “Portainer” added." in page and "Only me" in page
    event = AuditEvent.objects.filter(organisation=org_a, resource_type="access_app").get()
    assert event.actor_user == admin_a and event.interface == "ui"


def test_the_wizard_takes_several_domains_and_existing_policies(admin, org_a, world):
    response = admin.post(
        url("access-app-create", org_a),
        {
            "name": "Grafana",
            "session_duration": "24h",
            "dest_0_subdomain": "grafana",
            "dest_0_zone": "example.com",
            "dest_1_subdomain": "metrics",
            "dest_1_zone": "example.com",
            "dest_1_path": "/admin",
            "decision": "allow",
            "policies": [str(world["policy"].pk)],
        },
    )
    assert response.status_code == 302
    app = Application.objects.for_org(org_a).get(name="Grafana")
    assert [d["uri"] for d in app.destinations] == ["grafana.example.com", "metrics.example.com/admin"]
    assert [link.policy for link in app.policy_links.all()] == [world["policy"]]


def test_wizard_errors_are_shown_beside_their_fields_and_nothing_is_written(admin, org_a, world):
    response = admin.post(
        url("access-app-create", org_a),
        wizard_data(dest_0_subdomain="wiki", include_0_values="not-an-email", policy_name=""),
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "is not an email address" in page and "Give the new policy a name" in page
    # The form is fine, the service refuses: the domain belongs to another application.
    response = admin.post(url("access-app-create", org_a), wizard_data(dest_0_subdomain="wiki"))
    page = response.content.decode()
    assert "already protected by the application “Wiki”" in page
    assert 'id="id_dest_0_subdomain_error"' not in page or "has-error" in page
    # A zone that is not the organisation's, and no policy at all.
    response = admin.post(
        url("access-app-create", org_a),
        {"name": "X", "session_duration": "24h", "dest_0_zone": "other.test", "decision": "allow"},
    )
    page = response.content.decode()
    assert "Select a valid choice" in page and "without a policy nobody can reach" in page
    # A Bypass policy with an identity rule: refused by the policy service, shown above the rules.
    response = admin.post(url("access-app-create", org_a), wizard_data(dest_0_subdomain="new", decision="bypass"))
    assert "cannot use identity rules" in response.content.decode()
    assert Application.objects.for_org(org_a).count() == 1
    assert Policy.objects.for_org(org_a).count() == 1


def test_editing_an_application_keeps_and_drops_policies(admin, org_a, world):
    app = world["app"]
    form = admin.get(url("access-app-edit", org_a, app.pk.hex)).content.decode()
    assert 'value="wiki"' in form and "Staff" in form
    response = admin.post(
        url("access-app-edit", org_a, app.pk.hex),
        {
            "name": "Wiki 2",
            "session_duration": "12h",
            "dest_0_subdomain": "wiki",
            "dest_0_zone": "example.com",
            "decision": "allow",
            "policy_name": "Contractors",
            "include_0_selector": "group",
            "include_0_values": "ops",
        },
    )
    assert response.status_code == 302
    app.refresh_from_db()
    assert app.name == "Wiki 2" and app.session_duration == "12h"
    policies = [link.policy for link in app.policy_links.all()]
    assert [p.name for p in policies] == ["Contractors"]
    assert policies[0].include == [{"group": {"id": str(world["group"].pk)}}]
    assert Policy.objects.for_org(org_a).filter(pk=world["policy"].pk).exists()  # reusable: detached, kept


def test_delete_an_application_after_confirming(admin, org_a, world):
    app = world["app"]
    page = admin.get(url("access-app-delete", org_a, app.pk.hex)).content.decode()
    assert "Delete application “Wiki”?" in page
    response = admin.post(url("access-app-delete", org_a, app.pk.hex), follow=True)
    assert "Application “Wiki” deleted." in response.content.decode()
    assert not Application.objects.for_org(org_a).exists()


def test_revoke_the_tokens_of_an_application(admin, org_a, world):
    response = admin.post(url("access-app-revoke", org_a, world["app"].pk.hex), follow=True)
    assert "is revoked" in response.content.decode()
    world["app"].refresh_from_db()
    assert world["app"].tokens_revoked_at is not None


def test_reusable_policy_create_edit_and_delete(admin, org_a, world):
    response = admin.post(
        url("access-policy-create", org_a),
        {
            "name": "Office",
            "decision": "allow",
            "session_duration": "",
            "include_0_selector": "ip_list",
            "include_0_values": "Office",
            "require_0_selector": "geo",
            "require_0_values": "de\nFR",
            "exclude_0_selector": "email",
            "exclude_0_values": "mallory@example.com",
        },
    )
    assert response.status_code == 302
    policy = Policy.objects.for_org(org_a).get(name="Office")
    assert policy.include == [{"ip_list": {"id": str(world["list"].pk)}}]
    assert policy.require == [{"geo": {"country_code": "DE"}}, {"geo": {"country_code": "FR"}}]
    assert policy.exclude == [{"email": {"email": "mallory@example.com"}}]
    # The editor shows names, not ids, and saves changes.
    page = admin.get(url("access-policy", org_a, policy.pk.hex)).content.decode()
    assert ">\nOffice</textarea>" in page and "DE\nFR" in page
    response = admin.post(
        url("access-policy", org_a, policy.pk.hex),
        {"name": "Office hours", "decision": "deny", "include_0_selector": "everyone", "include_0_values": ""},
    )
    assert response.status_code == 302
    policy.refresh_from_db()
    assert policy.name == "Office hours" and policy.decision == "deny" and policy.include == [{"everyone": {}}]
    assert policy.require == [] and policy.exclude == []
    # Errors: no include rule, an unknown group name, values for Everyone.
    response = admin.post(url("access-policy-create", org_a), {"name": "Empty", "decision": "allow"})
    assert "Add at least one Include rule" in response.content.decode()
    response = admin.post(
        url("access-policy-create", org_a),
        {"name": "G", "decision": "allow", "include_0_selector": "group", "include_0_values": "Nope"},
    )
    assert "No access group named “Nope” (you have: Ops)" in response.content.decode()
    response = admin.post(
        url("access-policy-create", org_a),
        {"name": "G", "decision": "allow", "include_0_selector": "everyone", "include_0_values": "x"},
    )
    assert "takes no values" in response.content.decode()
    # A policy in use cannot be deleted; an unused one can.
    response = admin.post(url("access-policy-delete", org_a, world["policy"].pk.hex), follow=True)
    assert "used by the application “Wiki”" in response.content.decode()
    response = admin.post(url("access-policy-delete", org_a, policy.pk.hex), follow=True)
    assert "Policy “Office hours” deleted." in response.content.decode()


def test_group_and_list_create_edit_delete(admin, org_a, world):
    response = admin.post(
        url("access-group-create", org_a),
        {"name": "Engineering", "include_0_selector": "email_domain", "include_0_values": "example.com"},
    )
    assert response.status_code == 302
    group = AccessGroup.objects.for_org(org_a).get(name="Engineering")
    assert group.include == [{"email_domain": {"domain": "example.com"}}]
    response = admin.post(
        url("access-group", org_a, group.pk.hex),
        {"name": "Engineering", "include_0_selector": "email_domain", "include_0_values": "bad domain"},
    )
    assert "is not a domain" in response.content.decode()
    response = admin.post(url("access-group-create", org_a), {"name": "Ops", "include_0_selector": "everyone"})
    assert "already exists" in response.content.decode()
    admin.post(url("access-group-delete", org_a, group.pk.hex))
    assert not AccessGroup.objects.for_org(org_a).filter(name="Engineering").exists()

    response = admin.post(
        url("access-list-create", org_a), {"name": "VIPs", "type": "EMAIL", "items": "A@example.com\nb@example.com"}
    )
    assert response.status_code == 302
    access_list = AccessList.objects.for_org(org_a).get(name="VIPs")
    assert access_list.items == ["a@example.com", "b@example.com"]
    response = admin.post(url("access-list", org_a, access_list.pk.hex), {"name": "VIPs", "items": "nope"})
    assert "“nope” is not an email address" in response.content.decode()
    admin.post(url("access-list", org_a, access_list.pk.hex), {"name": "VIPs", "items": "c@example.com"})
    access_list.refresh_from_db()
    assert access_list.items == ["c@example.com"]
    admin.post(url("access-list-delete", org_a, access_list.pk.hex))
    assert not AccessList.objects.for_org(org_a).filter(name="VIPs").exists()


def test_a_service_token_secret_is_shown_once(admin, org_a):
    response = admin.post(url("access-service-tokens", org_a), {"name": "Backup job", "duration": "8760h"}, follow=True)
    token = ServiceToken.objects.for_org(org_a).get(name="Backup job")
    page = response.content.decode()
    secret = re.search(r'id="client-secret" value="([0-9a-f]{64})"', page).group(1)
    assert token.client_id in page
    from access.services.directory import client_secret_matches

    assert client_secret_matches(token, secret)
    again = admin.get(url("access-service-token-created", org_a, token.pk.hex)).content.decode()
    assert secret not in again and "cannot be shown again" in again
    # Rotation shows the new secret once too.
    response = admin.post(url("access-service-token-rotate", org_a, token.pk.hex), follow=True)
    rotated = re.search(r'id="client-secret" value="([0-9a-f]{64})"', response.content.decode()).group(1)
    token.refresh_from_db()
    assert rotated != secret and client_secret_matches(token, rotated)
    response = admin.post(url("access-service-token-refresh", org_a, token.pk.hex), follow=True)
    assert "now works until" in response.content.decode()
    admin.post(url("access-service-token-delete", org_a, token.pk.hex))
    assert not ServiceToken.objects.for_org(org_a).exists()


def test_the_policy_tester_shows_decisions_and_the_deciding_policy(admin, org_a, world):
    page = admin.get(url("access-tester", org_a), {"email": "ana@example.com"}).content.decode()
    assert "Wiki" in page and ">Allow<" in page and "Staff" in page
    page = admin.get(url("access-tester", org_a), {"email": "eve@evil.test"}).content.decode()
    assert "Block (no policy matched)" in page
    page = admin.get(url("access-tester", org_a), {"email": "nope"}).content.decode()
    assert re.search(r'<div id="id_email_error"><p class="error">An email address\.', page)
    page = admin.get(url("access-tester", org_a), {"ip": "1.2.3"}).content.decode()
    assert "is not an IP address" in page
    page = admin.get(url("access-tester", org_a), {"url": "https://elsewhere.example.com/"}).content.decode()
    assert "No application covers that URL" in page
    response = admin.get(url("access-tester", org_a), {"url": "http://[oops/"})
    assert response.status_code == 200 and "Not a URL" in response.content.decode()


def test_the_policy_tester_takes_a_service_token(admin, org_a, world):
    """A Service Auth policy admits a request carrying the chosen token; without it the same app needs a login."""
    policy_save(
        organisation=org_a,
        actor=Actor.cli(),
        data={
            "name": "CI",
            "decision": "non_identity",
            "include": [{"service_token": {"token_id": str(world["token"].pk)}}],
        },
        application=world["app"],
    )
    page = admin.get(url("access-tester", org_a)).content.decode()
    assert f'<option value="{world["token"].pk}">CI</option>' in page
    page = admin.get(url("access-tester", org_a), {"service_token_id": str(world["token"].pk)}).content.decode()
    assert ">Service Auth<" in page and "CI" in page
    page = admin.get(url("access-tester", org_a), {"service_token_id": "", "ip": "198.51.100.1"}).content.decode()
    assert ">Service Auth<" not in page and "Login required" in page
    # Another organisation's token (or any unknown id) is not a choice.
    page = admin.get(url("access-tester", org_a), {"service_token_id": "00000000-0000-0000-0000-000000000000"})
    assert "Select a valid choice" in page.content.decode()


def test_the_access_log_filters_and_pages(admin, org_a, world):
    from access.models import AccessRequest

    app = world["app"]
    AccessRequest.objects.bulk_create(
        [
            AccessRequest(
                organisation=org_a,
                user_email=f"user{i}@example.com",
                app_uid=str(app.pk),
                app_domain="wiki.example.com",
                allowed=i % 2 == 0,
                ip_address="203.0.113.9",
            )
            for i in range(60)
        ]
    )
    page = admin.get(url("access-logs", org_a)).content.decode()
    assert "Page 1 of 2" in page and "wiki.example.com" in page
    page = admin.get(url("access-logs", org_a), {"email": "user3@example.com"}).content.decode()
    assert "user3@example.com" in page and "user5@example.com" not in page and "Blocked" in page
    page = admin.get(url("access-logs", org_a), {"allowed": "yes", "app": str(app.pk), "page": "2"}).content.decode()
    assert "Page" not in page or "Page 1 of 1" in page
    assert "user1@example.com" not in page


def test_settings_forms(admin, org_a):
    page = admin.get(url("access-settings", org_a)).content.decode()
    assert org_a.team_domain in page
    admin.post(url("access-settings", org_a), {"form": "session", "session-session_duration": "12h"})
    admin.post(
        url("access-settings", org_a),
        {"form": "design", "design-background_color": "#112233", "design-header_text": "Welcome"},
    )
    admin.post(url("access-settings", org_a), {"form": "keys", "keys-key_rotation_interval_days": "30"})
    from access.services.settings import access_settings

    row = access_settings(org_a)
    assert row.session_duration == "12h" and row.key_rotation_interval_days == 30
    assert row.login_design == {"background_color": "#112233", "header_text": "Welcome"}
    response = admin.post(url("access-settings", org_a), {"form": "design", "design-text_color": "blue"})
    assert "a colour such as #1f2933" in response.content.decode()
    response = admin.post(url("access-settings", org_a), {"form": "keys", "keys-key_rotation_interval_days": "3"})
    assert "greater than or equal to 21" in response.content.decode()
    response = admin.post(url("access-settings", org_a), {"form": "rotate"}, follow=True)
    assert "New signing key" in response.content.decode()
    response = admin.post(
        url("access-settings", org_a), {"form": "revoke", "revoke-email": "ana@example.com"}, follow=True
    )
    assert "Sessions of ana@example.com revoked" in response.content.decode()


def test_another_organisations_ids_are_404(client, admin_b, org_a, org_b, world):
    sign_in(client, admin_b, device=add_second_factor(admin_b))
    for address in page_urls(org_b, world)[2:]:
        if any(str(obj.pk.hex) in address for obj in world.values()):
            assert client.get(address).status_code == 404, address
    assert client.post(url("access-app-delete", org_b, world["app"].pk.hex)).status_code == 404
    assert client.post(url("access-service-token-rotate", org_b, world["token"].pk.hex)).status_code == 404
    assert client.get(url("access", org_a)).status_code == 404
    assert Application.objects.for_org(org_a).count() == 1


def test_an_applications_own_policy_is_edited_from_its_page(admin, org_a, world):
    app = world["app"]
    own = policy_save(
        organisation=org_a,
        actor=Actor.cli(),
        data={"name": "Me", "decision": "allow", "include": [{"email": {"email": "ana@example.com"}}]},
        application=app,
    )
    page = admin.get(url("access-app", org_a, app.pk.hex)).content.decode()
    assert url("access-app-policy", org_a, app.pk.hex, own.pk.hex) in page
    shared = admin.get(url("access-app-policy", org_a, app.pk.hex, world["policy"].pk.hex)).content.decode()
    assert "This policy is reusable" in shared
    response = admin.post(
        url("access-app-policy", org_a, app.pk.hex, own.pk.hex),
        {"name": "Me and Bo", "decision": "allow", "include_0_selector": "email", "include_0_values": "a@x.io\nb@x.io"},
    )
    assert response.status_code == 302 and response["Location"] == url("access-app", org_a, app.pk.hex)
    own.refresh_from_db()
    assert own.name == "Me and Bo" and len(own.include) == 2
    # A policy of another application is not reachable through this one.
    other = application_save(
        organisation=org_a, actor=Actor.cli(), data={"name": "Other", "domain": "other.example.com"}
    )
    assert admin.get(url("access-app-policy", org_a, other.pk.hex, own.pk.hex)).status_code == 404


def test_the_editor_keeps_a_domain_whose_zone_is_no_longer_active(admin, org_a, world, zone):
    from controlplane.models import Zone

    Zone.objects.for_org(org_a).filter(pk=zone.pk).update(status="pending")
    page = admin.get(url("access-app-edit", org_a, world["app"].pk.hex)).content.decode()
    assert '<option value="example.com" selected>example.com (not active)</option>' in page
    response = admin.post(
        url("access-app-edit", org_a, world["app"].pk.hex),
        {
            "name": "Wiki",
            "session_duration": "24h",
            "dest_0_subdomain": "wiki",
            "dest_0_zone": "example.com",
            "decision": "allow",
            "policies": [str(world["policy"].pk)],
        },
    )
    assert "is not under an active zone of this account" in response.content.decode()


def test_session_durations_read_as_words(admin, org_a, world):
    world["app"].session_duration = "168h"
    world["app"].save()
    assert ">1 week<" in admin.get(url("access", org_a)).content.decode()


def test_list_pages_run_a_constant_number_of_queries(admin, org_a, world):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def count(name):
        with CaptureQueriesContext(connection) as queries:
            assert admin.get(url(name, org_a)).status_code == 200
        return len(queries)

    pages = ["access", "access-policies", "access-groups", "access-lists", "access-service-tokens"]
    count(pages[0])  # the session's first page of the organisation writes it as the last one (a session save)
    before = {name: count(name) for name in pages}
    for i in range(4):
        policy = policy_save(
            organisation=org_a,
            actor=Actor.cli(),
            data={"name": f"p{i}", "decision": "allow", "include": [{"group": {"id": str(world["group"].pk)}}]},
        )
        application_save(
            organisation=org_a,
            actor=Actor.cli(),
            data={"name": f"app{i}", "domain": f"app{i}.example.com", "policies": [str(policy.pk)]},
        )
        group_save(organisation=org_a, actor=Actor.cli(), data={"name": f"g{i}", "include": [{"everyone": {}}]})
        list_save(organisation=org_a, actor=Actor.cli(), data={"name": f"l{i}", "type": "EMAIL", "items": []})
        service_token_create(organisation=org_a, actor=Actor.cli(), data={"name": f"t{i}"})
    assert {name: count(name) for name in pages} == before
