"""The audit log (filters, pagination, details) and the outbox of embedded mode."""

from __future__ import annotations

import datetime
import re
from unittest import mock

from controlplane.actors import Actor
from controlplane.choices import AuditAction
from controlplane.models import OutboxMessage
from controlplane.services.audit import audit_record
from tests.factories import UserFactory


def audit_url(org):
    return f"/o/{org.account_id}/audit/"


def record(org, *, action=AuditAction.UPDATE, resource_type="zone", name="example.com", user=None, **changes):
    actor = Actor(user=user, interface="ui", ip="192.0.2.9", user_agent="Mozilla/5.0 test") if user else Actor.cli()
    return audit_record(
        organisation=org, actor=actor, action=action, resource_type=resource_type, resource_name=name, changes=changes
    )


def test_log_shows_who_what_changes_and_where(admin_client, org_a, org_b, admin_a):
    record(org_a, user=admin_a, status=["pending", "active"])
    record(org_b, name="secret-of-bravo.example")
    html = admin_client.get(audit_url(org_a)).content.decode()
    for text in [
        "admin@alpha.test",
        "Update",
        "example.com",
        "pending",
        "active",
        "192.0.2.9",
        "Web UI",
        "Mozilla/5.0",
    ]:
        assert text in html, text
    assert "secret-of-bravo" not in html


def test_filters(admin_client, org_a, admin_a):
    other = UserFactory(email="other@alpha.test")
    record(org_a, user=admin_a, action=AuditAction.CREATE, resource_type="zone", name="made.example")
    record(org_a, user=other, action=AuditAction.DELETE, resource_type="api_token", name="gone-token")
    with mock.patch("django.utils.timezone.now", return_value=datetime.datetime(2020, 1, 15, 12, tzinfo=datetime.UTC)):
        record(org_a, user=admin_a, action=AuditAction.UPDATE, resource_type="zone", name="ancient.example")

    def names(**query):
        html = admin_client.get(audit_url(org_a), query).content.decode()
        return {n for n in ["made.example", "gone-token", "ancient.example"] if n in html}

    assert names() == {"made.example", "gone-token", "ancient.example"}
    assert names(action="delete") == {"gone-token"}
    assert names(resource_type="zone") == {"made.example", "ancient.example"}
    assert names(actor="OTHER@") == {"gone-token"}
    assert names(since="2020-01-15", until="2020-01-15") == {"ancient.example"}
    assert names(since="2021-01-01") == {"made.example", "gone-token"}


def test_invalid_filters_are_errors_not_500s(admin_client, org_a):
    response = admin_client.get(audit_url(org_a), {"since": "2021-02-01", "until": "2021-01-01", "action": "nuke"})
    html = response.content.decode()
    assert response.status_code == 200
    assert "The end date is before the start date." in html and "Select a valid choice." in html
    assert admin_client.get(audit_url(org_a), {"since": "yesterday"}).status_code == 200


def test_pagination_keeps_the_filters(admin_client, org_a, admin_a):
    for index in range(30):
        record(org_a, user=admin_a, action=AuditAction.CREATE, name=f"n{index}.example")
    first = admin_client.get(audit_url(org_a), {"action": "create"}).content.decode()
    assert "Page 1 of 2" in first and "action=create&amp;page=2" in first
    assert first.count("<tr>") == 1 + 25  # the head and a page of 25
    second = admin_client.get(audit_url(org_a), {"action": "create", "page": "2"}).content.decode()
    assert "Page 2 of 2" in second and second.count("<tr>") == 1 + 5
    assert admin_client.get(audit_url(org_a), {"page": "999"}).status_code == 200
    assert admin_client.get(audit_url(org_a), {"page": "x"}).status_code == 200


def test_event_detail(admin_client, org_a, admin_a):
    event = record(org_a, user=admin_a, grants=[None, {"zones": "edit"}])
    html = admin_client.get(f"{audit_url(org_a)}{event.id.hex}/").content.decode()
    assert "Mozilla/5.0 test" in html and "192.0.2.9" in html and "zones" in html


def test_the_log_is_read_only(admin_client, org_a):
    assert admin_client.post(audit_url(org_a)).status_code == 405


def test_outbox_lists_only_this_organisations_mail(admin_client, org_a, org_b, settings):
    settings.EMAIL_OUTBOX_MODE = True
    mine = OutboxMessage.objects.create(
        organisation=org_a,
        from_email="noreply@localhost",
        to=["x@alpha.test"],
        subject="Hello Alpha",
        body="Open https://example.test/invitations/abc/ now",
    )
    OutboxMessage.objects.create(
        organisation=org_b, from_email="n@l", to=["y@bravo.test"], subject="Hello Bravo", body="b"
    )
    OutboxMessage.objects.create(
        organisation=None, from_email="n@l", to=["z@x.test"], subject="Password reset", body="c"
    )
    html = admin_client.get(f"/o/{org_a.account_id}/outbox/").content.decode()
    assert "Hello Alpha" in html and "Hello Bravo" not in html and "Password reset" not in html
    detail = admin_client.get(f"/o/{org_a.account_id}/outbox/{mine.id.hex}/").content.decode()
    assert '<a href="https://example.test/invitations/abc/"' in detail and "x@alpha.test" in detail


def test_filter_by_object_name_or_id(admin_client, org_a, admin_a):
    import uuid

    audit_record(
        organisation=org_a,
        actor=Actor.cli(),
        action=AuditAction.UPDATE,
        resource_type="tunnel",
        resource_id=uuid.UUID("0a1b2c3d-0000-4000-8000-0000000000ff"),
        resource_name="made.example",
    )
    record(org_a, user=admin_a, name="other.example")
    html = admin_client.get(audit_url(org_a), {"object": "MADE"}).content.decode()
    assert "made.example" in html and "other.example" not in html
    html = admin_client.get(audit_url(org_a), {"object": "0a1b2c3d-0000-4000-8000-0000000000ff"}).content.decode()
    assert "made.example" in html and "other.example" not in html
    html = admin_client.get(audit_url(org_a), {"object": "0a1b2c3d00004000800000000000ffff"}).content.decode()
    assert "made.example" not in html and "No entries match these filters" in html


def test_changes_read_as_before_and_after_in_the_uis_words(admin_client, org_a, admin_a):
    from tunnels.services import config_diff

    old = {"ingress": [{"hostname": "a.example.com", "service": "http://x:1"}, {"service": "http_status:404"}]}
    new = {
        "ingress": [
            {"hostname": "a.example.com", "service": "https://x:2", "originRequest": {"noTLSVerify": True}},
            {"service": "http_status:404"},
        ]
    }
    record(org_a, user=admin_a, resource_type="tunnel_configuration", name="lab", **config_diff(old, new))
    record(
        org_a, user=admin_a, resource_type="zone", name="z.example", require_2fa=[False, True], tags=[[], ["a", "b"]]
    )
    html = admin_client.get(audit_url(org_a)).content.decode()
    items = re.findall(r"<li>(.*?)</li>", html.split("<tbody>")[1])
    changes = [" ".join(re.sub(r"<[^>]+>", " ", item).split()) for item in items]
    assert "rule 1 › service http://x:1 → https://x:2" in changes
    assert "rule 1 › No TLS verify yes" in changes
    assert "require 2fa no → yes" in changes and "tags a, b" in changes
    assert "{" not in html.split("<tbody>")[1].split("</tbody>")[0]  # no raw JSON
    assert "rule 2" not in html  # unchanged rules and fields are left out


def test_the_audit_page_costs_the_same_queries_for_a_full_page(admin_client, org_a, admin_a):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    record(org_a, user=admin_a, status=["pending", "active"])
    # The session's first page of the organisation records it as the last one visited (a session write); the pages
    # after it do not write the session again.
    admin_client.get(audit_url(org_a))
    with CaptureQueriesContext(connection) as few:
        admin_client.get(audit_url(org_a), {"action": "update"})
    for index in range(40):
        record(org_a, user=UserFactory(email=f"u{index}@alpha.test"), status=["pending", "active"])
        record(org_a, action=AuditAction.DELETE, name=f"token-{index}")
    with CaptureQueriesContext(connection) as many:
        admin_client.get(audit_url(org_a), {"action": "update", "page": "2"})
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]
