"""The tunnel pages: create, install commands, public hostnames with Cloudflare's form, rotate, delete, and
notification destinations; read-only members see but cannot change, other organisations get 404."""

from __future__ import annotations

import pytest
from django.urls import reverse

from controlplane.actors import Actor
from controlplane.models import DnsRecord
from controlplane.services.zones import zone_create, zone_mark_verified
from tests.controlplane.ui.conftest import sign_in
from tunnels.models import NotificationDestination, Tunnel
from tunnels.services import tunnel_create


@pytest.fixture
def zone(org_a):
    return zone_mark_verified(
        zone=zone_create(organisation=org_a, name="example.com", actor=Actor.cli()), actor=Actor.cli()
    )


def url(name, org, *args):
    return reverse(f"ui:{name}", args=[org.account_id, *args])


def test_create_a_tunnel_and_see_its_install_commands(client, admin_a, org_a):
    sign_in(client, admin_a)
    response = client.post(url("tunnels", org_a), {"name": "home-lab"}, follow=True)
    assert response.status_code == 200
    tunnel = Tunnel.objects.for_org(org_a).get()
    page = response.content.decode()
    assert "home-lab" in page and "Install and run a connector" in page
    assert "/connector/download/zt_connector-" in page and "service install" in page
    assert "Debian / Ubuntu" in page and "Docker" in page and "macOS" in page and "RHEL" in page
    assert str(tunnel.id) in page


def test_invalid_tunnel_names_show_a_form_error(client, admin_a, org_a):
    sign_in(client, admin_a)
    tunnel_create(organisation=org_a, name="taken", actor=Actor.cli())
    response = client.post(url("tunnels", org_a), {"name": "taken"})
    assert response.status_code == 200 and "already exists" in response.content.decode()
    response = client.post(url("tunnels", org_a), {"name": "0a1b2c3d-0000-4000-8000-000000000000"})
    assert "cannot be a UUID" in response.content.decode()


def test_add_edit_and_delete_a_public_hostname(client, admin_a, org_a, zone):
    sign_in(client, admin_a)
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    add = url("tunnel-hostname-add", org_a, tunnel.id.hex)
    page = client.get(add).content.decode()
    assert "Additional application settings" in page and "example.com" in page
    response = client.post(
        add,
        {
            "subdomain": "ghost",
            "zone": "example.com",
            "path": "",
            "service_type": "https",
            "url": "localhost:9443",
            "origin_server_name": "ghost.internal",
            "connect_timeout": "15",
        },
    )
    assert response.status_code == 302
    tunnel.refresh_from_db()
    assert tunnel.config["ingress"][0] == {
        "hostname": "ghost.example.com",
        "service": "https://localhost:9443",
        "originRequest": {"originServerName": "ghost.internal", "connectTimeout": 15},
    }
    assert tunnel.config["ingress"][-1] == {"service": "http_status:404"}
    assert DnsRecord.objects.for_org(org_a).get().name == "ghost.example.com"
    edit = url("tunnel-hostname-edit", org_a, tunnel.id.hex, 0)
    page = client.get(edit).content.decode()
    assert 'value="ghost"' in page and 'value="ghost.internal"' in page
    client.post(
        edit,
        {
            "subdomain": "ghost",
            "zone": "example.com",
            "service_type": "http",
            "url": "localhost:3001",
            "no_tls_verify": "on",
        },
    )
    tunnel.refresh_from_db()
    assert tunnel.config["ingress"][0]["service"] == "http://localhost:3001"
    assert tunnel.config["ingress"][0]["originRequest"] == {"noTLSVerify": True}
    client.post(url("tunnel-hostname-delete", org_a, tunnel.id.hex, 0))
    tunnel.refresh_from_db()
    assert tunnel.config["ingress"] == [{"service": "http_status:404"}]
    assert not DnsRecord.objects.for_org(org_a).exists()


def test_hostname_errors_are_shown_on_the_form(client, admin_a, org_a, zone):
    sign_in(client, admin_a)
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    add = url("tunnel-hostname-add", org_a, tunnel.id.hex)
    response = client.post(add, {"subdomain": "app", "zone": "example.com", "service_type": "http", "url": ""})
    assert "needs a URL" in response.content.decode()
    response = client.post(
        add, {"subdomain": "app", "zone": "example.com", "path": "(", "service_type": "http", "url": "localhost:1"}
    )
    assert "invalid regex" in response.content.decode()
    response = client.post(add, {"subdomain": "app", "zone": "other.org", "service_type": "http", "url": "x:1"})
    assert "Select a valid choice" in response.content.decode()
    assert client.get(url("tunnel-hostname-edit", org_a, tunnel.id.hex, 7)).status_code == 404


def test_rotate_and_delete(client, admin_a, org_a):
    sign_in(client, admin_a)
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    before = Tunnel.objects.for_org(org_a).get().secret_ciphertext
    response = client.post(url("tunnel-rotate", org_a, tunnel.id.hex), {"disconnect": "on"}, follow=True)
    assert "Token rotated" in response.content.decode()
    assert Tunnel.objects.for_org(org_a).get().secret_ciphertext != before
    response = client.post(url("tunnel-delete", org_a, tunnel.id.hex), follow=True)
    assert "deleted" in response.content.decode()
    assert Tunnel.objects.for_org(org_a).get().deleted_at is not None


def test_read_only_members_see_no_token_and_cannot_change_anything(client, reader_a, org_a):
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    sign_in(client, reader_a)
    page = client.get(url("tunnel", org_a, tunnel.id.hex)).content.decode()
    assert "lab" in page and "Install and run a connector</h2>" not in page and "eyJhIjoi" not in page
    assert client.post(url("tunnels", org_a), {"name": "x"}).status_code == 403
    assert client.post(url("tunnel-rotate", org_a, tunnel.id.hex)).status_code == 403
    assert client.get(url("connectors", org_a)).status_code == 200


def test_other_organisations_get_404(client, admin_b, org_a):
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    sign_in(client, admin_b)
    assert client.get(url("tunnel", org_a, tunnel.id.hex)).status_code == 404
    assert (
        client.get(
            reverse(
                "ui:tunnel",
                args=[
                    admin_b.memberships.unscoped("test: admin_b has one membership").get().organisation.account_id,
                    tunnel.id.hex,
                ],
            )
        ).status_code
        == 404
    )


def test_notification_destinations(client, admin_a, org_a):
    sign_in(client, admin_a)
    page = url("tunnel-notifications", org_a)
    response = client.post(
        page,
        {"name": "ops", "kind": "webhook", "url": "https://hooks.example.org/zt", "secret": "short", "health": "on"},
    )
    assert "16 characters" in response.content.decode()
    client.post(
        page,
        {
            "name": "ops",
            "kind": "webhook",
            "url": "https://hooks.example.org/zt",
            "secret": "a-long-signing-secret",
            "health": "on",
        },
    )
    destination = NotificationDestination.objects.for_org(org_a).get()
    assert destination.alert_types == ["tunnel_health_event"]
    client.post(url("tunnel-notification-delete", org_a, destination.id.hex))
    assert not NotificationDestination.objects.for_org(org_a).exists()
