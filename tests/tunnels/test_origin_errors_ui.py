"""The tunnel page's "Recent origin errors": the reasons visitors are not shown, under the request id they are
shown; searchable by request id; members of the organisation only (the product's default: 2FA required)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from controlplane.actors import Actor
from edge.errors import OriginErrorRecorder, write_batch
from tests.controlplane.ui.conftest import add_second_factor, sign_in
from tunnels.services import tunnel_create

REASON = "TLS verification failed for 'localhost' (localhost:9443): self-signed certificate"


def page(client, org, tunnel, **params):
    url = reverse("ui:tunnel", args=[org.account_id, tunnel.id.hex])
    response = client.get(url, params)
    return response.status_code, response.content.decode()


def record(*entries):
    recorder = OriginErrorRecorder()
    for tunnel, request_id, status, reason in entries:
        recorder.record(
            organisation_id=tunnel.organisation_id,
            tunnel_id=tunnel.pk,
            request_id=request_id,
            hostname="app.example.com",
            status=status,
            reason=reason,
            method="GET",
            path="/login",
        )
    write_batch(recorder.take(), "test")


@pytest.fixture
def signed_in(client, org_a, org_b):
    """Sign a member in as a person does under the default rule (the second factor required and passed)."""
    for org in (org_a, org_b):
        org.require_2fa = True
        org.save()

    def as_member(user):
        client.logout()
        return sign_in(client, user, device=add_second_factor(user))

    return as_member


@pytest.mark.django_db
def test_the_tunnel_page_lists_the_reasons_and_finds_a_request_id(signed_in, admin_a, reader_a, org_a):
    lab = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    other = tunnel_create(organisation=org_a, name="other", actor=Actor.cli())
    record(
        (lab, "0123456789abcdef-edge1", 502, REASON),
        (lab, "fedcba9876543210-edge1", 504, "No response within 100 s."),
        (other, "aaaabbbbccccdddd-edge1", 530, "No connector of this tunnel is connected."),
    )
    for user in (admin_a, reader_a):  # read-only members see them too
        client = signed_in(user)
        status, text = page(client, org_a, lab)
        assert status == 200 and "Recent origin errors" in text
        assert "0123456789abcdef-edge1" in text and "fedcba9876543210-edge1" in text
        assert "TLS verification failed for &#x27;localhost&#x27; (localhost:9443)" in text
        assert "aaaabbbbccccdddd" not in text  # another tunnel's

    # Search: the full id, its first part, or as copied from the error page's footer.
    for query in ("0123456789abcdef-edge1", "0123456789abcdef", "  Request ID 0123456789abcdef-edge1 "):
        status, text = page(client, org_a, lab, request_id=query)
        assert "0123456789abcdef-edge1" in text and "localhost:9443" in text
        assert "fedcba9876543210" not in text, query
    status, text = page(client, org_a, lab, request_id="0000000000000000")
    assert "No origin error of this tunnel has a request ID starting with" in text and "localhost:9443" not in text
    # Searched on the wrong tunnel's page: pointed at the right one.
    status, text = page(client, org_a, lab, request_id="aaaabbbbccccdddd-edge1")
    assert "It was recorded on" in text and f"/tunnels/{other.id.hex}/?request_id=aaaabbbbccccdddd-edge1" in text
    # Bounded and harmless input.
    status, text = page(client, org_a, lab, request_id="<script>" + "x" * 5000)
    assert status == 200 and "<script>x" not in text


@pytest.mark.django_db
def test_another_organisation_sees_nothing_of_them(signed_in, admin_a, admin_b, org_a, org_b):
    lab = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    theirs = tunnel_create(organisation=org_b, name="theirs", actor=Actor.cli())
    record((lab, "0123456789abcdef-edge1", 502, REASON))
    client = signed_in(admin_b)
    status, _ = page(client, org_a, lab)
    assert status == 404
    status, text = page(client, org_b, theirs, request_id="0123456789abcdef-edge1")
    assert status == 200 and "localhost:9443" not in text and "It was recorded on" not in text
    assert lab.id.hex not in text and "No origin error of this tunnel" in text


@pytest.mark.django_db
def test_left_out_errors_are_counted_on_the_page(signed_in, admin_a, org_a):
    lab = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    recorder = OriginErrorRecorder()
    for i in range(100):
        recorder.record(
            organisation_id=org_a.pk,
            tunnel_id=lab.pk,
            request_id=f"{i:016x}-e",
            hostname="a.example.com",
            status=502,
            reason="refused",
        )
    write_batch(recorder.take(), "test")
    _, text = page(signed_in(admin_a), org_a, lab)
    assert "and 80 more errors of this tunnel around this time" in text
