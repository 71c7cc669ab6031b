"""Every organisation page, discovered from the URL configuration: renders for an administrator, refuses
changes from a read-only member (403), is a 404 for members of other organisations and for missing ids, and
sends anonymous visitors to sign in."""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, reverse

from controlplane.actors import Actor
from controlplane.choices import AuditAction, Role
from controlplane.models import AuditEvent, Membership, OutboxMessage
from controlplane.services.audit import audit_record
from controlplane.services.members import invitation_create
from controlplane.services.tokens import api_token_create
from controlplane.ui.urls import organisation_patterns
from tests.factories import ZoneFactory

POST_ONLY = {
    "member-role",
    "member-remove",
    "invitation-revoke",
    "token-revoke",
    "zone-check",
    "zone-delete",
    "tunnel-rename",
    "tunnel-rotate",
    "tunnel-disconnect",
    "tunnel-delete",
    "tunnel-hostname-delete",
    "tunnel-notification-delete",
    "certificate-key",
    "certificate-revoke",
    "access-app-revoke",
    "access-service-token-rotate",
    "access-service-token-refresh",
}
# Pages that answer a file rather than HTML.
DOWNLOADS = {"certificate-download"}
# Forms only for those who may submit them (read-only members get 403 on GET too).
EDIT_FORMS = {"token-create", "certificate-create"}


def flat_patterns(patterns):
    """Every URLPattern, descending into includes (tunnels' pages are included from tunnels/ui_urls.py)."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from flat_patterns(pattern.url_patterns)
        else:
            yield pattern


def objects_of(org, *, settings_outbox=True):
    """One object of each kind the URLs name, in `org`; returns the URL kwargs that point at them."""
    actor = Actor.cli()
    zone = ZoneFactory(organisation=org, name=f"{org.team_name}.example.com")
    invitation, _ = invitation_create(
        organisation=org, email=f"new@{org.team_name}.test", role=Role.READ_ONLY, actor=actor
    )
    token, _ = api_token_create(organisation=org, name="t", grants={"zones": "read"}, actor=actor)
    event = audit_record(organisation=org, actor=actor, action=AuditAction.UPDATE, resource_type="test")
    message = OutboxMessage.objects.create(organisation=org, from_email="a@b", to=["c@d"], subject="s", body="b")
    member = Membership.objects.for_org(org).order_by("-pk").first()
    from tunnels.services import notification_destination_create, tunnel_config_update, tunnel_create

    tunnel = tunnel_create(organisation=org, name="lab", actor=actor)
    config = {
        "ingress": [{"hostname": f"app.{zone.name}", "service": "http://localhost:1"}, {"service": "http_status:404"}]
    }
    tunnel_config_update(tunnel=tunnel, config=config, actor=actor)
    destination = notification_destination_create(
        organisation=org, actor=actor, name="ops", kind="email", emails=["ops@example.org"]
    )
    from certificates.services import certificate_create, certificate_issue

    certificate = certificate_create(
        organisation=org, actor=actor, hostnames=[f"app.{zone.name}"], request_type="origin-ecc"
    )
    certificate_issue(organisation_id=str(org.pk), certificate_id=certificate.id)  # its job runs on commit
    return {
        "certificate_id": certificate.id,
        **access_objects(org, zone, actor),
        "tunnel_id": tunnel.id.hex,
        "index": "0",
        "destination_id": destination.id.hex,
        "zone_id": zone.id.hex,
        "invitation_id": invitation.id.hex,
        "token_id": token.id.hex,
        "event_id": event.id.hex,
        "message_id": message.id.hex,
        "member_id": str(member.pk),
    }


def access_objects(org, zone, actor):
    from access.services.applications import application_save
    from access.services.directory import group_save, list_save, service_token_create
    from access.services.policies import policy_save

    everyone = [{"everyone": {}}]
    policy = policy_save(organisation=org, actor=actor, data={"name": "p", "decision": "allow", "include": everyone})
    app = application_save(
        organisation=org, actor=actor, data={"name": "a", "domain": f"a.{zone.name}", "policies": [str(policy.pk)]}
    )
    group = group_save(organisation=org, actor=actor, data={"name": "g", "include": everyone})
    access_list = list_save(organisation=org, actor=actor, data={"name": "l", "type": "IP", "items": ["10.0.0.0/8"]})
    token, _ = service_token_create(organisation=org, actor=actor, data={"name": "s"})
    return {
        "app_id": app.pk.hex,
        "policy_id": policy.pk.hex,
        "group_id": group.pk.hex,
        "list_id": access_list.pk.hex,
        "service_token_id": token.pk.hex,
    }


def organisation_urls(org, object_kwargs):
    urls = []
    for pattern in flat_patterns(organisation_patterns):
        assert isinstance(pattern, URLPattern)
        names = re.findall(r"<(?:\w+:)?(\w+)>", str(pattern.pattern))
        kwargs = {"account_id": org.account_id, **{name: object_kwargs[name] for name in names}}
        urls.append((pattern.name, reverse(f"ui:{pattern.name}", kwargs=kwargs)))
    return urls


@pytest.fixture
def world(org_a, org_b, admin_a, reader_a, admin_b, settings):
    settings.EMAIL_OUTBOX_MODE = True
    return {"a": objects_of(org_a), "b": objects_of(org_b)}


def test_every_organisation_url_is_covered_by_the_object_kwargs(world, org_a):
    assert len(organisation_urls(org_a, world["a"])) == len(list(flat_patterns(organisation_patterns)))


def test_every_page_renders_for_an_administrator(admin_client, world, org_a):
    for name, url in organisation_urls(org_a, world["a"]):
        if name in POST_ONLY:
            assert admin_client.get(url).status_code == 405, url
            continue
        response = admin_client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        if name in DOWNLOADS:
            continue
        html = response.content.decode()
        assert "Alpha" in html and 'class="sidebar"' in html


def test_read_only_member_reads_pages_but_every_change_is_a_403(reader_client, world, org_a):
    for name, url in organisation_urls(org_a, world["a"]):
        if name not in POST_ONLY and name not in EDIT_FORMS:
            assert reader_client.get(url).status_code == 200, url
        response = reader_client.post(url, {"role": Role.SUPER_ADMIN, "name": "x.example.com", "email": "x@y.test"})
        assert response.status_code == 403, (url, response.status_code)
        assert "You can’t do that" in response.content.decode()
    assert AuditEvent.objects.for_org(org_a).filter(actor_email="reader@alpha.test").count() == 0


def test_token_form_is_not_offered_to_members_who_cannot_create_tokens(reader_client, org_a):
    assert reader_client.get(f"/o/{org_a.account_id}/tokens/new/").status_code == 403
    assert "Create token" not in reader_client.get(f"/o/{org_a.account_id}/tokens/").content.decode()


def test_another_organisations_member_gets_404_everywhere_and_learns_nothing(outsider_client, world, org_a):
    for _name, url in organisation_urls(org_a, world["a"]):
        for method in (outsider_client.get, outsider_client.post):
            response = method(url)
            assert response.status_code == 404, (url, response.status_code)
            html = response.content.decode()
            assert "Alpha" not in html and "alpha" not in html.replace(url, "")


def test_missing_and_malformed_account_ids_look_like_other_organisations(admin_client, world):
    for account_id in ["0" * 32, "not-an-id", "f" * 31]:
        assert admin_client.get(f"/o/{account_id}/").status_code == 404
        assert admin_client.post(f"/o/{account_id}/zones/", {"name": "x.example.com"}).status_code == 404


def test_objects_of_another_organisation_are_404_inside_your_own(admin_client, world, org_a):
    """Your own account id with another tenant's object ids (and junk ids): the same 404 as a missing one."""
    for name, url in organisation_urls(org_a, world["b"]):
        if name in {
            "overview",
            "settings",
            "members",
            "tokens",
            "token-create",
            "zones",
            "audit",
            "outbox",
            "tunnels",
            "tunnel-notifications",
            "connectors",
            "certificates",
        } or (name.startswith("access") and not any(v in url for k, v in world["b"].items() if len(v) == 32)):
            continue
        response = admin_client.post(url) if name in POST_ONLY else admin_client.get(url)
        assert response.status_code == 404, (url, response.status_code)
    junk = {key: "zzz" for key in world["a"]} | {"member_id": "99999999999999999999999"}
    for name, url in organisation_urls(org_a, junk):
        if "zzz" in url or "9999" in url:
            response = admin_client.post(url) if name in POST_ONLY else admin_client.get(url)
            assert response.status_code == 404, (url, response.status_code)


def test_anonymous_visitors_are_sent_to_sign_in(client, world, org_a):
    for _name, url in organisation_urls(org_a, world["a"]):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith("/login/?next="), url


def test_outbox_pages_do_not_exist_when_mail_is_really_sent(admin_client, world, org_a, settings):
    settings.EMAIL_OUTBOX_MODE = False
    assert admin_client.get(f"/o/{org_a.account_id}/outbox/").status_code == 404
    assert admin_client.get(f"/o/{org_a.account_id}/outbox/{world['a']['message_id']}/").status_code == 404
    assert (
        'href="/o/' + org_a.account_id + '/outbox/"' not in admin_client.get(f"/o/{org_a.account_id}/").content.decode()
    )


def test_account_pages_render(admin_client):
    for url in ["/account/", "/account/two-factor/", "/account/password/", "/organisations/new/"]:
        assert admin_client.get(url).status_code == 200, url
