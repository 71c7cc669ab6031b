"""Tunnel alerts: health changes (with flap damping) and lifecycle events, by email and signed webhook."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.server
import json

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.test import override_settings

from controlplane.actors import Actor
from controlplane.embedded_tasks import runner
from controlplane.models import OutboxMessage
from tests.live_server import serve_in_thread
from tests.tunnels.test_connector_endpoint import open_connector, receive
from tunnels.notifications import SIGNATURE_HEADER, TIMESTAMP_HEADER
from tunnels.services import notification_destination_create, tunnel_create, tunnel_delete, tunnel_token

SECRET = "s3cret-signing-key-0123"


class Receiver(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((self.headers, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True  # the test receiver listens on loopback
    Receiver.received = []
    with serve_in_thread(Receiver) as port:
        yield f"http://127.0.0.1:{port}/hook", Receiver.received


def verify(headers, body) -> dict:
    expected = (
        "sha256="
        + hmac.new(SECRET.encode(), headers[TIMESTAMP_HEADER].encode() + b"." + body, hashlib.sha256).hexdigest()
    )
    assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
    return json.loads(body)


@pytest.mark.django_db(transaction=True)
def test_lifecycle_events_reach_email_and_webhook(org_a, webhook, settings):
    settings.EMAIL_BACKEND = "controlplane.mail.OutboxEmailBackend"
    url, received = webhook
    notification_destination_create(
        organisation=org_a, actor=Actor.cli(), name="ops", kind="webhook", url=url, secret=SECRET
    )
    notification_destination_create(
        organisation=org_a, actor=Actor.cli(), name="mail", kind="email", emails=["ops@alpha.test"]
    )
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    tunnel_delete(tunnel=tunnel, actor=Actor.cli())
    assert runner().wait_until_idle(10)  # delivered off the request's thread
    payloads = [verify(h, b) for h, b in received]
    # Delivered by parallel workers (as by Celery's): in either order.
    assert sorted((p["alert_type"], p["data"]["tunnel_status"]) for p in payloads) == [
        ("tunnel_update_event", "deleted"),
        ("tunnel_update_event", "inactive"),
    ]
    subjects = sorted(OutboxMessage.objects.for_org(org_a).values_list("subject", flat=True))
    assert subjects == ["[deleted] Tunnel lab", "[inactive] Tunnel lab"]


@pytest.mark.django_db(transaction=True)
@override_settings(TUNNEL_HEALTH_NOTIFY_DELAY_SECONDS=1)
async def test_health_alerts_are_damped(fresh_hub, org_a, webhook):
    url, received = webhook
    await sync_to_async(notification_destination_create)(
        organisation=org_a,
        actor=Actor.cli(),
        name="ops",
        kind="webhook",
        url=url,
        secret=SECRET,
        alert_types=["tunnel_health_event"],
    )
    tunnel = await sync_to_async(tunnel_create)(organisation=org_a, name="lab", actor=Actor.cli())
    token = await sync_to_async(tunnel_token)(tunnel)
    conn, _ = await open_connector(token)
    await receive(conn)
    await asyncio.sleep(1.6)
    assert [verify(h, b)["data"]["tunnel_status"] for h, b in received] == ["healthy"]
    # A flap: down and back up within the damping delay announces nothing.
    await conn.disconnect()
    await asyncio.sleep(0.2)
    again, _ = await open_connector(token)
    await receive(again)
    await asyncio.sleep(1.8)
    assert [verify(h, b)["data"]["tunnel_status"] for h, b in received] == ["healthy"]
    await again.disconnect()
    await asyncio.sleep(1.8)
    assert [verify(h, b)["data"]["tunnel_status"] for h, b in received] == ["healthy", "down"]


@pytest.mark.django_db
def test_destinations_are_validated(org_a):
    with pytest.raises(ValidationError, match="http"):
        notification_destination_create(
            organisation=org_a, actor=Actor.cli(), name="x", kind="webhook", url="ftp://x", secret=SECRET
        )
    with pytest.raises(ValidationError, match="16 characters"):
        notification_destination_create(
            organisation=org_a, actor=Actor.cli(), name="x", kind="webhook", url="https://x.org/h", secret="short"
        )
    with pytest.raises(ValidationError, match="email address"):
        notification_destination_create(organisation=org_a, actor=Actor.cli(), name="x", kind="email", emails=["nope"])
    with pytest.raises(ValidationError, match="alert_types|Choose"):
        notification_destination_create(
            organisation=org_a, actor=Actor.cli(), name="x", kind="email", emails=["a@b.org"], alert_types=["x"]
        )


@pytest.mark.django_db
def test_a_lifecycle_event_reaches_only_its_organisations_enabled_destinations_that_take_it(
    org_a, org_b, django_capture_on_commit_callbacks
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tunnels.models import NotificationDestination
    from tunnels.tasks import notify_tunnel_event

    def destination(organisation, name, alert_types, enabled=True):
        made = notification_destination_create(
            organisation=organisation,
            actor=Actor.cli(),
            name=name,
            kind="email",
            emails=[f"{name}@example.org"],
            alert_types=alert_types,
        )
        NotificationDestination.objects.for_org(organisation).filter(pk=made.pk).update(enabled=enabled)
        return made

    destination(org_a, "health-only", ["tunnel_health_event"])
    destination(org_a, "off", ["tunnel_update_event"], enabled=False)
    theirs = destination(org_b, "theirs", ["tunnel_update_event"])
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    tunnel_b = tunnel_create(organisation=org_b, name="lab", actor=Actor.cli())
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks() as delivered:
        notify_tunnel_event(organisation_id=str(org_a.pk), tunnel_id=str(tunnel.pk), event="created")
    assert delivered == [] and len(queries) == 1  # nobody to tell: the tunnel is not even read
    with django_capture_on_commit_callbacks() as delivered:  # another organisation's tunnel id: nothing
        notify_tunnel_event(organisation_id=str(org_b.pk), tunnel_id=str(tunnel.pk), event="created")
    assert delivered == []
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks() as delivered:
        notify_tunnel_event(organisation_id=str(org_b.pk), tunnel_id=str(tunnel_b.pk), event="deleted")
    assert len(queries) == 2 and len(delivered) == 1
    assert delivered[0].__defaults__ == (str(theirs.pk),)  # the one destination, by its id
