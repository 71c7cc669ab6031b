"""A tunnel's recent origin errors beyond the page's first render: pushed to the tunnel's open pages as the edge
records them (the status feed with `?tunnel=`), and listed by the API (`…/cfd_tunnel/{id}/origin_errors`), both
for the organisation's members only, with the product's defaults (2FA required)."""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from controlplane.actors import Actor
from edge.errors import OriginErrorRecorder, write_batch
from tests.conftest import make_token
from tests.tunnels.test_connector_endpoint import application
from tests.tunnels.test_live_status import _product_defaults, next_json, session_cookie  # noqa: F401 (fixture)
from tunnels.events import Event, OriginErrorsRecorded
from tunnels.services import tunnel_create

REASON = "TLS verification failed for 'localhost' (localhost:9443): self-signed certificate"


def pending(recorder: OriginErrorRecorder, tunnel, request_id: str, status: int = 502, reason: str = REASON) -> None:
    recorder.record(
        organisation_id=tunnel.organisation_id,
        tunnel_id=tunnel.pk,
        request_id=request_id,
        hostname="portainer.example.com",
        status=status,
        reason=reason,
        method="GET",
        path="/#!/home",
    )


def feed(organisation, cookie: bytes, query: str) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://testserver"), (b"host", b"testserver"), (b"cookie", cookie)]
    path = f"/ws/accounts/{organisation.id.hex}/tunnels/status?{query}"
    return WebsocketCommunicator(application(), path, headers=headers)


async def opened(organisation, user, query: str) -> tuple[WebsocketCommunicator, dict]:
    comm = feed(organisation, await sync_to_async(session_cookie)(user), query)
    connected, _ = await comm.connect()
    assert connected
    snapshot = await next_json(comm)
    assert snapshot["type"] == "snapshot"
    return comm, snapshot


@pytest.mark.django_db(transaction=True)
async def test_the_tunnel_page_gets_new_origin_errors_without_a_reload(fresh_hub, org_a, org_b, admin_a, admin_b):
    lab = await sync_to_async(tunnel_create)(organisation=org_a, name="lab", actor=Actor.cli())
    other = await sync_to_async(tunnel_create)(organisation=org_a, name="other", actor=Actor.cli())
    earlier = OriginErrorRecorder()
    pending(earlier, lab, "1111111111111111-edge1", 530, "No connector of this tunnel is connected.")
    await sync_to_async(write_batch)(earlier.take(), "test")

    page, snapshot = await opened(org_a, admin_a, f"tunnel={lab.id.hex}")
    focus = snapshot["origin_errors"]
    assert focus["tunnel"] == str(lab.id) and focus["request_id"] == ""
    assert [e["request_id"] for e in focus["errors"]] == ["1111111111111111-edge1"]
    searching, snapshot = await opened(org_a, admin_a, f"tunnel={lab.id.hex}&request_id=2222")
    assert snapshot["origin_errors"]["errors"] == []
    elsewhere, snapshot = await opened(org_a, admin_a, f"tunnel={other.id.hex}")
    assert snapshot["origin_errors"]["errors"] == []
    # Another organisation's member naming this tunnel on their own feed gets nothing of it, then or later.
    intruder, snapshot = await opened(org_b, admin_b, f"tunnel={lab.id.hex}")
    assert snapshot["origin_errors"]["errors"] == [] and snapshot["tunnels"] == []

    recorder = OriginErrorRecorder()
    pending(recorder, lab, "2222222222222222-edge1")
    pending(recorder, lab, "3333333333333333-edge1", 504, "No response within 100 s.")
    await recorder.flush()  # what the edge's flush task does every second
    pushed = await next_json(page)
    assert pushed["type"] == "origin_errors" and pushed["tunnel"] == str(lab.id)
    newest, older = pushed["errors"]  # newest first, as the page lists them
    assert (newest["request_id"], newest["status"]) == ("3333333333333333-edge1", 504)
    assert (older["request_id"], older["reason"], older["path"]) == ("2222222222222222-edge1", REASON, "/#!/home")
    assert isinstance(older["id"], int) and older["occurred_at"]
    found = await next_json(searching)
    assert [e["request_id"] for e in found["errors"]] == ["2222222222222222-edge1"]  # the search's only
    assert await elsewhere.receive_nothing(0.3)
    assert await intruder.receive_nothing(0.3)
    for comm in (page, searching, elsewhere, intruder):
        await comm.disconnect()


@pytest.mark.parametrize(
    "wire",
    [
        {"kind": "origin_errors", "org": "x", "tunnel": "y", "errors": []},
        {"kind": "origin_errors", "org": "00" * 16, "tunnel": "00" * 16, "errors": "no"},
        {"kind": "origin_errors", "org": "00" * 16, "tunnel": "00" * 16, "errors": [{"id": "x"}]},
    ],
)
def test_a_malformed_origin_errors_event_is_refused(wire):
    from tunnels.events import MalformedEvent

    with pytest.raises(MalformedEvent):
        Event.from_wire(wire)


def test_origin_errors_events_cross_processes_as_they_were():
    event = OriginErrorsRecorded(
        organisation_id=uuid.uuid4(),
        tunnel_id=uuid.uuid4(),
        errors=(
            {
                "id": 7,
                "occurred_at": "2026-12-03T13:00:00+00:00",
                "request_id": "a-edge1",
                "hostname": "h.example.com",
                "method": "GET",
                "path": "/",
                "status": 502,
                "reason": "refused",
                "unrecorded": 0,
            },
        ),
    )
    assert Event.from_wire(event.to_wire()) == event


# the API


def api(client, org, tunnel_id, token, **params):
    url = f"/client/v4/accounts/{org.account_id}/cfd_tunnel/{tunnel_id}/origin_errors"
    return client.get(url, params, HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.mark.django_db
def test_the_api_lists_a_tunnels_origin_errors_newest_first_by_page(client, org_a, org_b):
    lab = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    other = tunnel_create(organisation=org_a, name="other", actor=Actor.cli())
    recorder = OriginErrorRecorder()
    for i in range(3):
        pending(recorder, lab, f"{i:016x}-edge1")
    pending(recorder, other, "ffffffffffffffff-edge1")
    write_batch(recorder.take(), "test")
    reader = make_token(org_a, grants={"tunnels": "read"})

    first = api(client, org_a, lab.id, reader, per_page=2).json()
    assert first["success"] is True
    assert [e["request_id"] for e in first["result"]] == ["0000000000000002-edge1", "0000000000000001-edge1"]
    assert first["result_info"] == {"page": 1, "per_page": 2, "count": 2, "total_count": 3, "total_pages": 2}
    second = api(client, org_a, lab.id.hex, reader, per_page=2, page=2).json()
    assert [e["request_id"] for e in second["result"]] == ["0000000000000000-edge1"]
    row = second["result"][0]
    assert (row["status"], row["reason"], row["hostname"], row["method"], row["path"], row["unrecorded"]) == (
        502,
        REASON,
        "portainer.example.com",
        "GET",
        "/#!/home",
        0,
    )
    # A visitor's request id, as pasted from the error page.
    found = api(client, org_a, lab.id, reader, request_id=" Request ID 0000000000000001").json()["result"]
    assert [e["request_id"] for e in found] == ["0000000000000001-edge1"]
    assert api(client, org_a, lab.id, reader, request_id="ffff").json()["result"] == []  # another tunnel's
    # NUL and control characters pasted along (the schema allows any text here) are dropped, not a 400.
    pasted = api(client, org_a, lab.id, reader, request_id="\x000000000000000001\t")
    assert pasted.status_code == 200 and [e["request_id"] for e in pasted.json()["result"]] == [
        "0000000000000001-edge1"
    ]
    bad = api(client, org_a, lab.id, reader, per_page=0)
    assert bad.status_code == 400 and "per_page" in bad.content.decode()
    assert api(client, org_a, lab.id, reader, request_id="").status_code == 400


@pytest.mark.django_db
def test_the_api_shows_them_to_the_organisation_only(client, org_a, org_b):
    lab = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    recorder = OriginErrorRecorder()
    pending(recorder, lab, "0123456789abcdef-edge1")
    write_batch(recorder.take(), "test")
    theirs = make_token(org_b)
    assert api(client, org_a, lab.id, theirs).status_code == 404  # not their account
    assert api(client, org_b, lab.id, theirs).status_code == 404  # not their tunnel
    assert api(client, org_a, "not-a-uuid", make_token(org_a)).status_code == 404
    no_tunnels = make_token(org_a, grants={"zones": "edit"})
    assert api(client, org_a, lab.id, no_tunnels).status_code == 403


def test_the_event_is_bounded():
    rows = [{"id": i, "request_id": f"{i}", "status": 502} for i in range(200)]
    wire = {"kind": "origin_errors", "org": uuid.uuid4().hex, "tunnel": uuid.uuid4().hex, "errors": rows}
    event = Event.from_wire(wire)
    assert isinstance(event, OriginErrorsRecorded) and len(event.errors) == 50
    assert event.errors[-1]["request_id"] == "199"
