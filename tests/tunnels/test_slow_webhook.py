"""A hanging webhook stalls nobody (issue 14, item 5). In embedded mode alerts used to be delivered inside the
call that queued them (Celery's eager mode): on the tenant's own request, and on the hub's database threads for
health alerts; so one tenant's webhook that never answers held its request for 7 × 10 s and kept another tenant's
connector from registering for a minute. Now tasks run on the embedded runner's threads."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest
from asgiref.sync import sync_to_async
from django.test import Client, override_settings

from connector import protocol
from controlplane.actors import Actor
from controlplane.embedded_tasks import runner
from tests.conftest import make_token
from tests.tunnels.test_connector_endpoint import open_connector, receive
from tunnels.models import Connection
from tunnels.services import notification_destination_create, tunnel_create, tunnel_token


class HangingServer:
    """Accepts connections and never answers (nor closes them): the worst webhook receiver."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.listener.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def hanging_webhook(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True  # the hanging receiver is on loopback
    server = HangingServer()
    yield f"http://127.0.0.1:{server.port}/hook", server
    server.close()
    runner().discard_pending()  # the retries of the hung deliveries must not occupy later tests' workers


def api_create_tunnel(raw_token: str, organisation, name: str) -> tuple[int, float]:
    started = time.perf_counter()
    response = Client().post(
        f"/client/v4/accounts/{organisation.account_id}/cfd_tunnel",
        data=json.dumps({"name": name, "config_src": "cloudflare"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw_token}",
    )
    return response.status_code, time.perf_counter() - started


async def hanging_destination(org, url: str, alert_types: list[str]) -> None:
    await sync_to_async(notification_destination_create)(
        organisation=org,
        actor=Actor.cli(),
        name="hangs",
        kind="webhook",
        url=url,
        secret="s3cret-signing-key-0123",
        alert_types=alert_types,
    )


async def wait_until_stuck(server: HangingServer, count: int) -> None:
    deadline = time.monotonic() + 5
    while len(server.accepted) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert len(server.accepted) >= count


@pytest.mark.django_db(transaction=True)
@override_settings(WEBHOOK_TIMEOUT_SECONDS=5)
async def test_a_hanging_webhook_delays_neither_the_request_that_queued_it_nor_another_tenants(
    org_a, org_b, hanging_webhook
):
    url, server = hanging_webhook
    await hanging_destination(org_a, url, ["tunnel_update_event"])
    token_a = await sync_to_async(make_token)(org_a)
    token_b = await sync_to_async(make_token)(org_b)
    status, _ = await sync_to_async(api_create_tunnel)(token_b, org_b, "b-warm-up")  # imports, URLconf: not timed
    assert status == 200

    # Tenant A's own requests each queue a lifecycle alert to the hanging receiver, more than there are workers.
    for number in range(runner().workers + 2):
        status, seconds = await sync_to_async(api_create_tunnel)(token_a, org_a, f"a-{number}")
        assert status == 200 and seconds < 1.0, seconds
    await wait_until_stuck(server, runner().workers)  # every worker is stuck on the receiver

    status, seconds = await sync_to_async(api_create_tunnel)(token_b, org_b, "b-1")
    assert status == 200 and seconds < 1.0, seconds


@pytest.mark.django_db(transaction=True)
@override_settings(TUNNEL_HEALTH_NOTIFY_DELAY_SECONDS=1, WEBHOOK_TIMEOUT_SECONDS=5)
async def test_health_alerts_to_a_hanging_webhook_do_not_hold_the_hub(fresh_hub, org_a, org_b, hanging_webhook):
    """Health alerts (here: four tunnels turning healthy) are scheduled by the hub; their delivery must not take
    the hub's database threads, which every tenant's connector registration needs."""
    url, server = hanging_webhook
    await hanging_destination(org_a, url, ["tunnel_health_event"])
    changing = 4  # more than the hub's database threads
    connectors = []
    for number in range(changing):
        tunnel = await sync_to_async(tunnel_create)(organisation=org_a, name=f"a-{number}", actor=Actor.cli())
        conn, _ = await open_connector(await sync_to_async(tunnel_token)(tunnel))
        await receive(conn)
        connectors.append(conn)
    await asyncio.sleep(1.5)  # the damping delay passes: "healthy" is announced, to the hanging receiver
    await wait_until_stuck(server, changing)

    tunnel_b = await sync_to_async(tunnel_create)(organisation=org_b, name="b-live", actor=Actor.cli())
    token = await sync_to_async(tunnel_token)(tunnel_b)
    started = time.perf_counter()
    conn, _ = await open_connector(token)
    assert isinstance(await receive(conn), protocol.Welcome)
    while not await sync_to_async(Connection.objects.for_org(org_b).filter(closed_at__isnull=True).exists)():
        assert time.perf_counter() - started < 2.0, "tenant B's connector did not register in time"
        await asyncio.sleep(0.02)
    assert time.perf_counter() - started < 2.0
    for each in (conn, *connectors):
        await each.disconnect()
