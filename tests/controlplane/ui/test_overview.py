"""The overview tells the truth about what exists (tunnels and their health, public hostnames, zones awaiting
verification) and points to the next step of the first-run tutorial, in a constant number of queries."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.actors import Actor
from controlplane.services.zones import zone_create, zone_mark_verified
from tests.controlplane.ui.conftest import add_second_factor, sign_in
from tunnels.models import Connection, Connector, Tunnel
from tunnels.services import public_hostname_save, tunnel_create

CLI = Actor.cli()


@pytest.fixture
def admin(client, admin_a, org_a):
    """The product's default: 2FA required, and this session passed it."""
    org_a.require_2fa = True
    org_a.save(update_fields=["require_2fa"])
    return sign_in(client, admin_a, device=add_second_factor(admin_a))


def connect(tunnel: Tunnel) -> None:
    """A running connector holding all the connections it asked for (one)."""
    now = timezone.now()
    connector = Connector.objects.create(
        organisation=tunnel.organisation,
        tunnel=tunnel,
        connector_id=f"8c6a1bd4-55ae-4cfb-9d3b-{tunnel.pk.hex[:12]}",
        run_at=now,
        last_seen_at=now,
        expected_connections=1,
    )
    Connection.objects.create(
        organisation=tunnel.organisation, tunnel=tunnel, connector=connector, server_id="s", opened_at=now
    )
    Tunnel.objects.for_org(tunnel.organisation).filter(pk=tunnel.pk).update(conns_active_at=now)


def next_step(client, org) -> tuple[str, str, str]:
    html = client.get(f"/o/{org.account_id}/").content.decode()
    assert "coming soon" not in html.lower()
    heading = re.search(r"<h2>(Next step: [^<]*|You are set up)</h2>", html).group(1)
    link = re.search(r'href="([^"]*)" data-next-step', html)
    return heading, link.group(1) if link else "", html


def test_the_overview_follows_the_tutorial_step_by_step(admin, org_a):
    account = org_a.account_id
    assert next_step(admin, org_a)[:2] == ("Next step: Add a zone", f"/o/{account}/zones/")

    zone = zone_create(organisation=org_a, name="example.com", actor=CLI)
    heading, link, html = next_step(admin, org_a)
    assert (heading, link) == ("Next step: Verify example.com", f"/o/{account}/zones/{zone.id.hex}/")
    assert "1 awaiting verification" in html

    zone_mark_verified(zone=zone, actor=CLI)
    assert next_step(admin, org_a)[:2] == ("Next step: Create a tunnel", f"/o/{account}/tunnels/#create")

    tunnel = tunnel_create(organisation=org_a, name="lab", actor=CLI)
    heading, link, html = next_step(admin, org_a)
    assert (heading, link) == ("Next step: Run the connector of lab", f"/o/{account}/tunnels/{tunnel.id.hex}/#install")
    assert "1 inactive" in html and "0 public hostnames" in html

    connect(tunnel)
    heading, link, html = next_step(admin, org_a)
    assert (heading, link) == (
        "Next step: Add a public hostname",
        f"/o/{account}/tunnels/{tunnel.id.hex}/hostnames/new/",
    )
    assert "1 healthy" in html

    public_hostname_save(tunnel=tunnel, actor=CLI, rule={"hostname": "app.example.com", "service": "http://x:1"})
    heading, link, html = next_step(admin, org_a)
    assert heading == "You are set up" and "serve 1 public hostname." in html
    assert re.search(r'data-overview="tunnels">\s*<span class="stat-value">1</span>', html)


def test_tunnel_health_is_summarised_in_a_constant_number_of_queries(admin, org_a):
    zone_mark_verified(zone=zone_create(organisation=org_a, name="example.com", actor=CLI), actor=CLI)
    first = tunnel_create(organisation=org_a, name="t0", actor=CLI)
    connect(first)
    admin.get(f"/o/{org_a.account_id}/")  # the session's first page of the organisation writes it as the last one
    with CaptureQueriesContext(connection) as one:
        assert admin.get(f"/o/{org_a.account_id}/").status_code == 200
    for n in range(1, 5):
        tunnel = tunnel_create(organisation=org_a, name=f"t{n}", actor=CLI)
        public_hostname_save(tunnel=tunnel, actor=CLI, rule={"hostname": f"h{n}.example.com", "service": "http://x:1"})
        if n % 2:
            connect(tunnel)
    Tunnel.objects.for_org(org_a).filter(name="t4").update(conns_active_at=timezone.now())  # was up, now down
    with CaptureQueriesContext(connection) as five:
        html = admin.get(f"/o/{org_a.account_id}/").content.decode()
    assert len(five) == len(one), [q["sql"] for q in five.captured_queries]
    assert "3 healthy" in html and "1 down" in html and "1 inactive" in html and "4 public hostnames" in html
