"""The tunnel API, driven by the official Cloudflare SDK."""

from __future__ import annotations

import cloudflare
import pytest
from django.utils import timezone

from controlplane.actors import Actor
from controlplane.services.zones import zone_create, zone_mark_verified
from tests.conftest import make_token
from tests.sdk import sdk_client
from tunnels.models import Connection, Connector
from tunnels.secrets import parse_token

CONFIG = {
    "ingress": [{"hostname": "app.example.com", "service": "http://localhost:3001"}, {"service": "http_status:404"}]
}


@pytest.fixture
def cf(org_a, token_a):
    zone_mark_verified(zone=zone_create(organisation=org_a, name="example.com", actor=Actor.cli()), actor=Actor.cli())
    return sdk_client(token_a)


def test_create_get_list_edit_delete(cf, org_a):
    tunnels = cf.zero_trust.tunnels.cloudflared
    acc = org_a.id.hex
    created = tunnels.create(account_id=acc, name="home-lab", config_src="cloudflare")
    assert created.name == "home-lab" and created.status == "inactive" and created.tun_type == "cfd_tunnel"
    assert created.remote_config is True
    got = tunnels.get(created.id, account_id=acc)
    assert got.id == created.id
    names = [t.name for t in tunnels.list(account_id=acc)]
    assert names == ["home-lab"]
    assert [t.name for t in tunnels.list(account_id=acc, name="nope")] == []
    assert [t.name for t in tunnels.list(account_id=acc, status="inactive")] == ["home-lab"]
    edited = tunnels.edit(created.id, account_id=acc, name="renamed")
    assert edited.name == "renamed"
    deleted = tunnels.delete(created.id, account_id=acc)
    assert deleted.deleted_at is not None
    # As Cloudflare: without is_deleted the list includes deleted tunnels.
    assert [t.name for t in tunnels.list(account_id=acc)] == ["renamed"]
    assert [t.name for t in tunnels.list(account_id=acc, is_deleted=False)] == []
    assert [t.name for t in tunnels.list(account_id=acc, is_deleted=True)] == ["renamed"]


def test_token_and_configuration(cf, org_a):
    tunnels = cf.zero_trust.tunnels.cloudflared
    acc = org_a.id.hex
    tunnel = tunnels.create(account_id=acc, name="lab")
    token = tunnels.token.get(tunnel.id, account_id=acc)
    assert isinstance(token, str) and parse_token(token).tunnel_id.hex == tunnel.id.replace("-", "")
    config = tunnels.configurations.get(tunnel.id, account_id=acc)
    assert config.version == 0
    updated = tunnels.configurations.update(tunnel.id, account_id=acc, config=CONFIG)
    assert updated.version == 1
    assert updated.config.ingress[0].hostname == "app.example.com"
    assert updated.config.ingress[1].hostname is None


def test_invalid_configuration_gives_a_field_error(cf, org_a):
    tunnels = cf.zero_trust.tunnels.cloudflared
    tunnel = tunnels.create(account_id=org_a.id.hex, name="lab")
    with pytest.raises(cloudflare.BadRequestError) as excinfo:
        tunnels.configurations.update(
            tunnel.id,
            account_id=org_a.id.hex,
            config={"ingress": [{"hostname": "a.example.com", "service": "http://x"}]},
        )
    assert "must match all URLs" in str(excinfo.value.body)


def test_connections_and_connectors(cf, org_a):
    tunnels = cf.zero_trust.tunnels.cloudflared
    acc = org_a.id.hex
    tunnel = tunnels.create(account_id=acc, name="lab")
    from tunnels.models import Tunnel

    row = Tunnel.objects.for_org(org_a).get(pk=tunnel.id)
    connector = Connector.objects.create(
        organisation=org_a,
        tunnel=row,
        connector_id="8c6a1bd4-55ae-4cfb-9d3b-a5c2b7c1b0f1",
        version="1.0",
        arch="linux_amd64",
        expected_connections=2,
        run_at=timezone.now(),
        last_seen_at=timezone.now(),
    )
    for index in range(2):
        Connection.objects.create(
            organisation=org_a,
            tunnel=row,
            connector=connector,
            conn_index=index,
            server_id="s1",
            origin_ip="203.0.113.9",
            opened_at=timezone.now(),
        )
    row.conns_active_at = timezone.now()
    row.save()
    assert tunnels.get(tunnel.id, account_id=acc).status == "healthy"
    clients = list(tunnels.connections.get(tunnel.id, account_id=acc))
    assert len(clients) == 1 and clients[0].id == str(connector.connector_id)
    assert len(clients[0].conns) == 2 and clients[0].conns[0].origin_ip == "203.0.113.9"
    one = tunnels.connectors.get(str(connector.connector_id), account_id=acc, tunnel_id=tunnel.id)
    assert one.arch == "linux_amd64"
    tunnels.connections.delete(tunnel.id, account_id=acc, client_id=str(connector.connector_id))
    with pytest.raises(cloudflare.NotFoundError):
        tunnels.connectors.get("00000000-0000-0000-0000-000000000000", account_id=acc, tunnel_id=tunnel.id)


def test_other_account_is_not_found(cf, org_a, org_b):
    other = sdk_client(make_token(org_b))
    tunnel = cf.zero_trust.tunnels.cloudflared.create(account_id=org_a.id.hex, name="lab")
    with pytest.raises(cloudflare.NotFoundError):
        other.zero_trust.tunnels.cloudflared.get(tunnel.id, account_id=org_a.id.hex)
    with pytest.raises(cloudflare.NotFoundError):
        other.zero_trust.tunnels.cloudflared.get(tunnel.id, account_id=org_b.id.hex)


def test_read_only_token_cannot_write(org_a):
    reader = sdk_client(make_token(org_a, grants={"tunnels": "read"}))
    assert list(reader.zero_trust.tunnels.cloudflared.list(account_id=org_a.id.hex)) == []
    with pytest.raises(cloudflare.PermissionDeniedError):
        reader.zero_trust.tunnels.cloudflared.create(account_id=org_a.id.hex, name="lab")


def test_list_filters_are_validated(cf, org_a):
    import httpx

    for query in ("name=%00", "status=broken", "existed_at=yesterday", "is_deleted=maybe", "uuid=nope", "page=0"):
        response = cf._client.get(
            f"http://testserver/client/v4/accounts/{org_a.id.hex}/cfd_tunnel?{query}",
            headers={"Authorization": cf._client.headers.get("Authorization") or f"Bearer {cf.api_token}"},
        )
        assert response.status_code == 400, (query, response.text)
        assert isinstance(response, httpx.Response) and response.json()["success"] is False


def test_single_public_hostnames_through_the_api(cf, org_a):
    tunnels = cf.zero_trust.tunnels.cloudflared
    acc = org_a.id.hex
    tunnel = tunnels.create(account_id=acc, name="lab")
    base = f"/accounts/{acc}/cfd_tunnel/{tunnel.id}/hostnames"

    def call(method, path, **kwargs):
        """A raw call through the SDK (these endpoints are ours, not in its types): the envelope's result."""
        return getattr(cf, method)(path, cast_to=object, **kwargs)["result"]

    listed = call("post", base, body={"hostname": "a.example.com", "service": "http://localhost:1"})
    assert [h["hostname"] for h in listed] == ["a.example.com"]
    listed = call("post", base, body={"hostname": "b.example.com", "service": "http://localhost:2", "version": 1})
    assert [(h["index"], h["hostname"]) for h in listed] == [(0, "a.example.com"), (1, "b.example.com")]
    config = tunnels.configurations.get(tunnel.id, account_id=acc)
    assert config.version == 2 and config.config.ingress[-1].service == "http_status:404"
    # A stale version is refused, naming the field; nothing changes.
    with pytest.raises(cloudflare.BadRequestError) as excinfo:
        cf.put(
            f"{base}/0",
            body={"hostname": "a.example.com", "service": "http://localhost:9", "version": 1},
            cast_to=object,
        )
    assert excinfo.value.errors[0].source.pointer == "/version"
    updated = call(
        "put",
        f"{base}/0",
        body={
            "hostname": "a.example.com",
            "service": "https://localhost:9",
            "originRequest": {"noTLSVerify": True},
            "version": 2,
        },
    )
    assert updated[0]["service"] == "https://localhost:9" and updated[0]["originRequest"] == {"noTLSVerify": True}
    assert call("get", f"{base}/1")["hostname"] == "b.example.com"
    remaining = call("delete", f"{base}/1")
    assert [h["hostname"] for h in remaining] == ["a.example.com"]
    with pytest.raises(cloudflare.NotFoundError):
        call("get", f"{base}/1")
    with pytest.raises(cloudflare.BadRequestError):
        call("post", base, body={"hostname": "c.other.org", "service": "http://localhost:1"})


def test_a_duplicate_hostname_is_refused_by_both_apis_naming_the_rule(cf, org_a):
    tunnels = cf.zero_trust.tunnels.cloudflared
    acc = org_a.id.hex
    tunnel = tunnels.create(account_id=acc, name="lab")
    doubled = {
        "ingress": [
            CONFIG["ingress"][0],
            {**CONFIG["ingress"][0], "service": "http://localhost:9"},
            CONFIG["ingress"][1],
        ]
    }
    with pytest.raises(cloudflare.BadRequestError) as excinfo:
        tunnels.configurations.update(tunnel.id, account_id=acc, config=doubled)
    error = excinfo.value.errors[0]
    assert "app.example.com is already rule #1 of this tunnel (to http://localhost:3001)" in error.message
    assert error.source.pointer == "/config.ingress[1].hostname"  # as every ingress error names its rule
    assert tunnels.configurations.get(tunnel.id, account_id=acc).version == 0

    tunnels.configurations.update(tunnel.id, account_id=acc, config=CONFIG)
    with pytest.raises(cloudflare.BadRequestError) as excinfo:
        cf.post(
            f"/accounts/{acc}/cfd_tunnel/{tunnel.id}/hostnames",
            body={"hostname": "App.Example.com", "service": "http://localhost:2"},
            cast_to=object,
        )
    assert "app.example.com is already rule #1 of this tunnel" in excinfo.value.errors[0].message
    assert tunnels.configurations.get(tunnel.id, account_id=acc).version == 1
