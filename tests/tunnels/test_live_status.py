"""Live status over the browser websocket: pushed within a second, only to the organisation's members, with the
product's defaults (the organisation requires 2FA and the member signed in with it); refused or closed with a
code that says why (tunnels.status_socket.WatcherCloseCode) when the session cannot watch."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from django.test import Client, override_settings
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.factories import DEFAULT_PASSWORD
from tests.tunnels.test_connector_endpoint import application, open_connector, receive
from tunnels.services import tunnel_token
from tunnels.status_socket import WatcherCloseCode

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _product_defaults(org_a, org_b, settings):
    """Organisations require 2FA, as they do unless an admin turns it off."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()  # sign-in throttling
    for organisation in (org_a, org_b):
        organisation.require_2fa = True
        organisation.save(update_fields=["require_2fa"])


def signed_in_client(user, *, second_factor: bool = True, enrolled: bool = True) -> Client:
    """A browser session made as a person makes it: the password form, then the code of the authenticator.
    Without `second_factor`: signed in with the password only (enrolled: the authenticator was set up in
    another session afterwards; not enrolled: on the way to enrolment)."""
    client = Client()
    device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True) if second_factor else None
    response = client.post("/login/", {"email": user.email, "password": DEFAULT_PASSWORD})
    assert response.status_code == 302, response.content[:500]
    if device is not None:
        code = f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"
        response = client.post("/login/verify/", {"code": code})
        assert response.status_code == 302 and "/login/" not in response["Location"], response.content[:500]
    elif enrolled:
        TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    return client


def session_cookie(user, **kwargs) -> bytes:
    return cookie_of(signed_in_client(user, **kwargs))


def cookie_of(client: Client) -> bytes:
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def communicator(organisation, cookie: bytes | None) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(application(), f"/ws/accounts/{organisation.id.hex}/tunnels/status", headers=headers)


async def watch(user, organisation, **kwargs):
    cookie = await sync_to_async(session_cookie)(user, **kwargs)
    comm = communicator(organisation, cookie)
    connected, _ = await comm.connect()
    return comm, connected


async def refusal(comm) -> tuple[dict, int]:
    """The `refused` message and the close code that follows it."""
    message = await next_json(comm)
    assert message["type"] == "refused", message
    closed = await comm.receive_output(2)
    assert closed["type"] == "websocket.close"
    assert closed["code"] == message["code"]
    return message, closed["code"]


async def next_json(comm, timeout=2.0):
    return json.loads(await comm.receive_from(timeout))


async def test_member_sees_connect_and_disconnect_live(fresh_hub, tunnel_a, admin_a, org_a):
    comm, connected = await watch(admin_a, org_a)
    assert connected
    snapshot = await next_json(comm)
    assert snapshot["type"] == "snapshot"
    assert [t["status"] for t in snapshot["tunnels"]] == ["inactive"]

    token = await sync_to_async(tunnel_token)(tunnel_a)
    started = time.monotonic()
    connector, _ = await open_connector(token, ha=2, index=0)
    assert (await receive(connector)).__class__.__name__ == "Welcome"
    update = await next_json(comm)
    assert time.monotonic() - started < 1.0
    assert update["type"] == "tunnel" and update["tunnel"]["status"] == "degraded"
    assert "1 of 2 connections" in update["tunnel"]["explanation"]

    second, _ = await open_connector(token, ha=2, index=1, connector_id=update["tunnel"]["connectors"][0]["id"])
    await receive(second)
    update = await next_json(comm)
    assert update["tunnel"]["status"] == "healthy"

    await connector.disconnect()
    await second.disconnect()
    update = await next_json(comm)
    while update["tunnel"]["status"] != "down":
        update = await next_json(comm)
    await comm.disconnect()


async def test_other_organisations_receive_nothing(fresh_hub, tunnel_a, admin_b, org_b, org_a):
    theirs, connected = await watch(admin_b, org_b)
    assert connected
    assert (await next_json(theirs))["tunnels"] == []
    token = await sync_to_async(tunnel_token)(tunnel_a)
    connector, _ = await open_connector(token)
    await receive(connector)
    await asyncio.sleep(0.5)
    assert await theirs.receive_nothing(0.5)
    await connector.disconnect()
    await theirs.disconnect()


async def test_second_factor_verified_session_is_accepted(fresh_hub, admin_a, org_a):
    comm, connected = await watch(admin_a, org_a)
    assert connected
    snapshot = await next_json(comm)
    assert snapshot["type"] == "snapshot" and snapshot["tunnels"] == []
    await comm.disconnect()


async def test_password_only_session_is_refused_with_a_link_to_the_second_factor(fresh_hub, admin_a, org_a):
    comm, connected = await watch(admin_a, org_a, second_factor=False)
    assert connected  # accepted, so that the browser learns why
    message, code = await refusal(comm)
    assert code == WatcherCloseCode.SECOND_FACTOR_REQUIRED == 4411
    assert "two-factor" in message["reason"]
    assert (message["fix_url"], message["fix_label"]) == ("/login/verify/", "Enter your second factor")


async def test_member_without_an_authenticator_is_sent_to_enrol(fresh_hub, admin_a, org_a):
    comm, _ = await watch(admin_a, org_a, second_factor=False, enrolled=False)
    message, code = await refusal(comm)
    assert code == WatcherCloseCode.SECOND_FACTOR_REQUIRED
    assert (message["fix_url"], message["fix_label"]) == ("/account/two-factor/", "Set up two-factor authentication")


async def test_non_members_and_anonymous_are_refused(fresh_hub, admin_b, org_a):
    comm, connected = await watch(admin_b, org_a)
    assert connected
    message, code = await refusal(comm)
    assert code == WatcherCloseCode.NOT_FOUND and message["fix_url"] == ""

    anonymous = communicator(org_a, None)
    connected, _ = await anonymous.connect()
    assert connected
    message, code = await refusal(anonymous)
    assert code == WatcherCloseCode.SIGNED_OUT
    assert (message["fix_url"], message["fix_label"]) == ("/login/", "Sign in")


@override_settings(LIVE_STATUS_RECHECK_SECONDS=1)
async def test_signing_out_elsewhere_closes_an_open_feed(fresh_hub, admin_a, org_a):
    client = await sync_to_async(signed_in_client)(admin_a)
    comm = communicator(org_a, cookie_of(client))
    connected, _ = await comm.connect()
    assert connected
    snapshot = await next_json(comm)
    assert snapshot["heartbeat"] == 1
    assert (await next_json(comm))["type"] == "heartbeat"  # still allowed: the feed says it is alive

    await sync_to_async(client.post)("/logout/")  # another tab
    message = await next_json(comm, timeout=3)
    while message["type"] == "heartbeat":
        message = await next_json(comm, timeout=3)
    assert message["type"] == "refused" and message["code"] == WatcherCloseCode.SIGNED_OUT
    assert (await comm.receive_output(2))["code"] == WatcherCloseCode.SIGNED_OUT
