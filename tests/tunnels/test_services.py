"""Tunnel rules: names, secrets, configuration validation, public hostnames and their DNS routes, deletion."""

from __future__ import annotations

import base64

import pytest
from django.core.exceptions import ValidationError

from controlplane.actors import Actor
from controlplane.models import AuditEvent, DnsRecord
from controlplane.services.zones import zone_create, zone_mark_verified
from tunnels.models import Connection, Connector, Tunnel, TunnelConfiguration
from tunnels.secrets import decrypt_secret, parse_token
from tunnels.services import (
    public_hostname_delete,
    public_hostname_save,
    tunnel_config_update,
    tunnel_create,
    tunnel_delete,
    tunnel_rotate_secret,
    tunnel_token,
    tunnel_update,
)

ACTOR = Actor.cli()


def config(*rules):
    return {"ingress": [*rules, {"service": "http_status:404"}]}


def test_a_create_that_lost_the_name_race_keeps_nothing_and_leaves_the_callers_transaction_usable(org_a, monkeypatch):
    """Both creates passed the "is the name free" check; the second insert loses in the database (the unique live
    name): the same error as the check's, no row and no audit event of it, the caller's transaction still usable."""
    from django.db import transaction

    from tunnels.services import lifecycle

    tunnel_create(organisation=org_a, name="raced", actor=ACTOR)
    monkeypatch.setattr(lifecycle, "_check_name_free", lambda *args, **kwargs: None)
    with transaction.atomic():
        with pytest.raises(ValidationError, match="already exists"):
            tunnel_create(organisation=org_a, name="raced", actor=ACTOR)
        assert Tunnel.objects.for_org(org_a).filter(name="raced").count() == 1  # the block still answers
    created = AuditEvent.objects.for_org(org_a).filter(resource_type="tunnel", action="create")
    assert list(created.values_list("resource_name", flat=True)) == ["raced"]


def test_names_are_unique_among_live_tunnels_and_not_uuids(org_a, org_b):
    tunnel_create(organisation=org_a, name="lab", actor=ACTOR)
    with pytest.raises(ValidationError, match="already exists"):
        tunnel_create(organisation=org_a, name="lab", actor=ACTOR)
    tunnel_create(organisation=org_b, name="lab", actor=ACTOR)  # another organisation may reuse it
    with pytest.raises(ValidationError, match="UUID"):
        tunnel_create(organisation=org_a, name="8c6a1bd4-55ae-4cfb-9d3b-a5c2b7c1b0f1", actor=ACTOR)
    with pytest.raises(ValidationError, match="needs a name"):
        tunnel_create(organisation=org_a, name="  ", actor=ACTOR)


def test_a_deleted_tunnels_name_can_be_reused(org_a):
    first = tunnel_create(organisation=org_a, name="lab", actor=ACTOR)
    tunnel_delete(tunnel=first, actor=ACTOR)
    second = tunnel_create(organisation=org_a, name="lab", actor=ACTOR)
    assert second.pk != first.pk


def test_secret_is_encrypted_at_rest_and_token_has_cloudflared_format(org_a):
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=ACTOR)
    secret = decrypt_secret(tunnel.secret_ciphertext)
    assert len(secret) == 32
    assert base64.b64encode(secret).decode() not in tunnel.secret_ciphertext
    token = tunnel_token(tunnel)
    assert token.startswith("eyJhIjoi")
    parsed = parse_token(token)
    assert parsed.account_tag == org_a.id.hex and parsed.tunnel_id == tunnel.id and parsed.secret == secret
    assert parsed.endpoint.startswith("http")


def test_user_supplied_secret_must_be_32_bytes_of_base64(org_a):
    with pytest.raises(ValidationError, match="32 bytes"):
        tunnel_create(organisation=org_a, name="a", actor=ACTOR, tunnel_secret=base64.b64encode(b"short").decode())
    with pytest.raises(ValidationError, match="base64"):
        tunnel_create(organisation=org_a, name="a", actor=ACTOR, tunnel_secret="***")
    tunnel = tunnel_create(
        organisation=org_a, name="a", actor=ACTOR, tunnel_secret=base64.b64encode(b"k" * 32).decode()
    )
    assert decrypt_secret(tunnel.secret_ciphertext) == b"k" * 32


def test_rotation_changes_the_token_and_is_audited(org_a):
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=ACTOR)
    before = tunnel_token(tunnel)
    rotated = tunnel_rotate_secret(tunnel=tunnel, actor=ACTOR)
    assert tunnel_token(rotated) != before
    assert AuditEvent.objects.for_org(org_a).filter(resource_type="tunnel", action="rotate").count() == 1


@pytest.fixture
def zone(org_a):
    return zone_mark_verified(zone=zone_create(organisation=org_a, name="example.com", actor=ACTOR), actor=ACTOR)


def test_config_versions_increment_and_are_kept(org_a, zone):
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=ACTOR)
    tunnel_config_update(
        tunnel=tunnel, config=config({"hostname": "a.example.com", "service": "http://localhost:1"}), actor=ACTOR
    )
    tunnel_config_update(
        tunnel=tunnel, config=config({"hostname": "b.example.com", "service": "http://localhost:2"}), actor=ACTOR
    )
    tunnel.refresh_from_db()
    assert tunnel.config_version == 2
    assert list(TunnelConfiguration.objects.for_org(org_a).values_list("version", flat=True)) == [2, 1]
    event = AuditEvent.objects.for_org(org_a).filter(resource_type="tunnel_configuration").first()
    assert event.changes["version"] == [1, 2]
    assert event.changes["ingress[0]"][0]["hostname"] == "a.example.com"


@pytest.mark.parametrize(
    "bad,message",
    [
        ({"ingress": []}, "doesn't contain any ingress rules"),
        (config({"hostname": "a.example.com:8080", "service": "http://x"}), "cannot contain a port"),
        ({"ingress": [{"hostname": "a.example.com", "service": "http://x"}]}, "must match all URLs"),
        (config({"hostname": "a.example.com", "service": "http://localhost:1/path"}), "different path"),
        (config({"hostname": "a.example.com", "service": "http_status:99"}), "invalid HTTP status code"),
        (config({"hostname": "a.*.example.com", "service": "http://x"}), "at most one wildcard"),
        (config({"hostname": "a.example.com", "path": "(", "service": "http://x"}), "invalid regex"),
    ],
)
def test_invalid_configs_are_refused_with_cloudflared_texts(org_a, zone, bad, message):
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=ACTOR)
    with pytest.raises(ValidationError) as excinfo:
        tunnel_config_update(tunnel=tunnel, config=bad, actor=ACTOR)
    assert message in str(excinfo.value)
    tunnel.refresh_from_db()
    assert tunnel.config_version == 0


def test_public_hostnames_must_be_under_an_active_zone_of_the_organisation(org_a, org_b, zone):
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=ACTOR)
    with pytest.raises(ValidationError, match="not under one of this account's active zones"):
        tunnel_config_update(
            tunnel=tunnel, config=config({"hostname": "a.other.org", "service": "http://x"}), actor=ACTOR
        )
    pending = zone_create(organisation=org_a, name="pending.org", actor=ACTOR)
    assert pending.status == "pending"
    with pytest.raises(ValidationError, match="active zones"):
        tunnel_config_update(
            tunnel=tunnel, config=config({"hostname": "a.pending.org", "service": "http://x"}), actor=ACTOR
        )
    # Another organisation cannot route a hostname under our zone.
    theirs = tunnel_create(organisation=org_b, name="lab", actor=ACTOR)
    with pytest.raises(ValidationError, match="active zones"):
        tunnel_config_update(
            tunnel=theirs, config=config({"hostname": "a.example.com", "service": "http://x"}), actor=ACTOR
        )


def test_hostnames_get_cname_routes_that_follow_the_config(org_a, zone):
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=ACTOR)
    tunnel_config_update(
        tunnel=tunnel,
        config=config(
            {"hostname": "app.example.com", "service": "http://localhost:3001"},
            {"hostname": "app.example.com", "path": "^/api", "service": "http://localhost:3002"},
            {"hostname": "*.example.com", "service": "http://localhost:3003"},
        ),
        actor=ACTOR,
    )
    records = {r.name: r for r in DnsRecord.objects.for_org(org_a)}
    assert set(records) == {"app.example.com", "*.example.com"}
    assert records["app.example.com"].content == f"{tunnel.id}.cfargotunnel.localhost"
    assert (records["app.example.com"].managed_by, records["app.example.com"].managed_by_id) == ("tunnel", tunnel.id)
    tunnel_config_update(
        tunnel=tunnel, config=config({"hostname": "app.example.com", "service": "http://x"}), actor=ACTOR
    )
    assert set(DnsRecord.objects.for_org(org_a).values_list("name", flat=True)) == {"app.example.com"}


def test_a_hostname_routed_to_another_tunnel_is_a_clear_conflict(org_a, zone):
    first = tunnel_create(organisation=org_a, name="one", actor=ACTOR)
    second = tunnel_create(organisation=org_a, name="two", actor=ACTOR)
    tunnel_config_update(
        tunnel=first, config=config({"hostname": "app.example.com", "service": "http://x"}), actor=ACTOR
    )
    with pytest.raises(ValidationError, match="already routes to tunnel “one”"):
        tunnel_config_update(
            tunnel=second, config=config({"hostname": "app.example.com", "service": "http://x"}), actor=ACTOR
        )
    assert DnsRecord.objects.for_org(org_a).get().managed_by_id == first.id


def test_single_hostnames_are_added_edited_and_removed_alone(org_a, zone):
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=ACTOR)
    public_hostname_save(
        tunnel=tunnel, actor=ACTOR, rule={"hostname": "a.example.com", "service": "http://localhost:1"}
    )
    public_hostname_save(
        tunnel=tunnel, actor=ACTOR, rule={"hostname": "b.example.com", "service": "http://localhost:2"}
    )
    tunnel.refresh_from_db()
    assert [r.get("hostname") for r in tunnel.config["ingress"]] == ["a.example.com", "b.example.com", None]
    public_hostname_save(
        tunnel=tunnel,
        actor=ACTOR,
        index=0,
        rule={"hostname": "a.example.com", "service": "https://localhost:9443", "originRequest": {"noTLSVerify": True}},
    )
    tunnel.refresh_from_db()
    assert tunnel.config["ingress"][0]["originRequest"] == {"noTLSVerify": True}
    public_hostname_delete(tunnel=tunnel, actor=ACTOR, index=1)
    tunnel.refresh_from_db()
    assert [r.get("hostname") for r in tunnel.config["ingress"]] == ["a.example.com", None]
    assert set(DnsRecord.objects.for_org(org_a).values_list("name", flat=True)) == {"a.example.com"}
    with pytest.raises(ValidationError, match="No such public hostname"):
        public_hostname_delete(tunnel=tunnel, actor=ACTOR, index=5)


def test_delete_is_refused_while_connected_unless_cascade(org_a, zone):
    from django.utils import timezone

    tunnel = tunnel_create(organisation=org_a, name="lab", actor=ACTOR)
    tunnel_config_update(
        tunnel=tunnel, config=config({"hostname": "app.example.com", "service": "http://x"}), actor=ACTOR
    )
    connector = Connector.objects.create(
        organisation=org_a,
        tunnel=tunnel,
        connector_id="8c6a1bd4-55ae-4cfb-9d3b-a5c2b7c1b0f1",
        run_at=timezone.now(),
        last_seen_at=timezone.now(),
    )
    Connection.objects.create(
        organisation=org_a, tunnel=tunnel, connector=connector, server_id="s", opened_at=timezone.now()
    )
    with pytest.raises(ValidationError, match="1 active connection"):
        tunnel_delete(tunnel=tunnel, actor=ACTOR)
    deleted = tunnel_delete(tunnel=tunnel, actor=ACTOR, cascade=True)
    assert deleted.deleted_at is not None
    assert not DnsRecord.objects.for_org(org_a).exists()
    assert Tunnel.objects.for_org(org_a).filter(deleted_at__isnull=True).count() == 0


def test_rename(org_a):
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=ACTOR)
    tunnel_create(organisation=org_a, name="other", actor=ACTOR)
    with pytest.raises(ValidationError, match="already exists"):
        tunnel_update(tunnel=tunnel, actor=ACTOR, name="other")
    assert tunnel_update(tunnel=tunnel, actor=ACTOR, name="renamed").name == "renamed"


@pytest.mark.parametrize(
    ("rules", "field", "message"),
    [
        (
            [
                {"hostname": "app.example.com", "service": "http://a"},
                {"hostname": "APP.example.com", "service": "http://b"},
            ],
            "config.ingress[1].hostname",
            "app.example.com is already rule #1 of this tunnel (to http://a)",
        ),
        (
            [
                {"hostname": "app.example.com", "service": "http://a"},
                {"hostname": "app.example.com", "path": "^/blog", "service": "http://b"},
                {"hostname": "app.example.com", "path": "^/blog", "service": "http://c"},
            ],
            "config.ingress[2].hostname",
            "app.example.com with path ^/blog is already rule #2 of this tunnel (to http://b)",
        ),
    ],
)
def test_the_same_hostname_and_path_twice_in_one_tunnel_is_refused_naming_the_rule(org_a, zone, rules, field, message):
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=ACTOR)
    with pytest.raises(ValidationError) as excinfo:
        tunnel_config_update(tunnel=tunnel, config=config(*rules), actor=ACTOR)
    assert message in excinfo.value.message_dict[field][0]
    tunnel.refresh_from_db()
    assert tunnel.config_version == 0 and not DnsRecord.objects.for_org(org_a).exists()


def test_a_single_hostname_cannot_be_added_twice_but_can_be_saved_again_in_place(org_a, zone):
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=ACTOR)
    rule = {"hostname": "a.example.com", "service": "http://localhost:1"}
    public_hostname_save(tunnel=tunnel, actor=ACTOR, rule=rule)
    public_hostname_save(tunnel=tunnel, actor=ACTOR, rule={**rule, "path": "^/api"})  # another path: its own rule
    with pytest.raises(ValidationError, match=r"a.example.com is already rule #1 of this tunnel"):
        public_hostname_save(tunnel=tunnel, actor=ACTOR, rule={**rule, "service": "http://localhost:2"})
    with pytest.raises(ValidationError, match=r"a.example.com is already rule #1"):
        public_hostname_save(tunnel=tunnel, actor=ACTOR, rule=rule, index=1)  # editing #2 into a copy of #1
    public_hostname_save(tunnel=tunnel, actor=ACTOR, rule={**rule, "service": "http://localhost:3"}, index=0)
    tunnel.refresh_from_db()
    assert [(r.get("hostname"), r.get("path"), r["service"]) for r in tunnel.config["ingress"]] == [
        ("a.example.com", None, "http://localhost:3"),
        ("a.example.com", "^/api", "http://localhost:1"),
        (None, None, "http_status:404"),
    ]


def test_a_configuration_write_announces_a_route_change_only_when_its_routes_change(
    org_a, zone, monkeypatch, django_capture_on_commit_callbacks
):
    """The edges reload every organisation's routes on a `routes` event: a write that changes no DNS record (no
    hostname before or after) announces none; adding and dropping a hostname each announce one."""
    from tunnels import runtime
    from tunnels.events import RoutesChanged

    published = []
    monkeypatch.setattr(runtime, "publish", published.append)
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=ACTOR)

    def routes_events(new_config):
        published.clear()
        with django_capture_on_commit_callbacks(execute=True):
            tunnel_config_update(tunnel=tunnel, config=new_config, actor=ACTOR)
        assert any(event.KIND == "config" for event in published)  # the connectors are told in every case
        return [event for event in published if isinstance(event, RoutesChanged)]

    assert routes_events(config()) == []
    assert routes_events(config({"hostname": "a.example.com", "service": "http://localhost:1"})) == [
        RoutesChanged(org_a.pk)
    ]
    assert routes_events(config({"hostname": "a.example.com", "service": "http://localhost:2"})) == []
    assert routes_events(config()) == [RoutesChanged(org_a.pk)]
