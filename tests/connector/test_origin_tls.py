"""TLS to origins (connector/origins.py's contexts through the data plane): verification failures that explain the
fix, caPool, originServerName, noTLSVerify, matchSNItoHost, the Origin CA roots sent with the config, unix+tls; a
throwaway CA made per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector import httpclient, protocol
from connector.protocol import ResetCode

from .dataplane_harness import (
    Connector,
    make_pki,
    rules,
    standard_origin,
    wait_until,
)


@pytest.fixture
async def tls_origin(tmp_path, parser):
    ca_file, context = make_pki(tmp_path)
    server = await standard_origin().start(ssl=context)
    server.ca_file = ca_file
    yield server
    await server.stop()


async def test_tls_verification_failure_explains_the_fix(edge, tls_origin):
    service = f"https://127.0.0.1:{tls_origin.port}"
    async with Connector(edge, rules(service)) as connector:
        untrusted = await connector.driver.fetch("/hello")
        await connector.push(rules(service, {"caPool": tls_origin.ca_file}))
        wrong_name = await connector.driver.fetch("/hello")
    for result in (untrusted, wrong_name):
        assert result.reset.code == ResetCode.ORIGIN_ERROR
        assert "TLS verification of the origin certificate failed for '127.0.0.1'" in result.reset.message
    assert "certificate signed by unknown authority" in untrusted.reset.message
    assert untrusted.reset.message.endswith(httpclient.UNKNOWN_AUTHORITY_HINT)
    assert wrong_name.reset.message.endswith(httpclient.TLS_VERIFY_HINT)
    assert "IP address mismatch" in wrong_name.reset.message or "mismatch" in wrong_name.reset.message


async def test_tls_no_verify_ca_pool_server_name_and_sni_to_host(edge, tls_origin):
    service = f"https://127.0.0.1:{tls_origin.port}"
    async with Connector(edge, rules(service, {"noTLSVerify": True})) as connector:
        no_verify = await connector.driver.fetch("/hello")
        await connector.push(rules(service, {"caPool": tls_origin.ca_file, "originServerName": "origin.test"}))
        named = await connector.driver.fetch("/hello")
        config = rules(service, {"caPool": tls_origin.ca_file, "matchSNItoHost": True}, hostname="origin.test")
        await connector.push(config)
        sni_to_host = await connector.driver.fetch("/hello", host="origin.test")
    for result in (no_verify, named, sni_to_host):
        assert result.response is not None and result.response.status == 200, result.reset
        assert len(result.body) == 1024


async def test_origin_ca_file_hook(edge, tls_origin):
    service = f"https://127.0.0.1:{tls_origin.port}"
    config = rules(service, {"originServerName": "origin.test"})
    async with Connector(edge, config, origin_ca_file=tls_origin.ca_file) as connector:
        result = await connector.driver.fetch("/hello")
    assert result.response.status == 200


async def test_origin_ca_roots_sent_with_the_config_are_trusted_and_replaced(edge, tls_origin):
    """The control plane's Origin CA bundle (CONFIG.origin_ca) is trusted besides the system store; a later
    CONFIG with another bundle (a rotation that retired this root) stops trusting it."""
    service = f"https://127.0.0.1:{tls_origin.port}"
    config = rules(service, {"originServerName": "origin.test"})
    root_pem = Path(tls_origin.ca_file).read_text()
    async with Connector(edge, config) as connector:
        untrusted = await connector.driver.fetch("/hello")
        connector.version += 1
        await connector.driver.conn.send(protocol.Config(version=connector.version, config=config, origin_ca=root_pem))
        await wait_until(lambda: connector.supervisor.dataplane.tls.origin_ca_pem == root_pem)
        trusted = await connector.driver.fetch("/hello")
        other_dir = Path(tls_origin.ca_file).parent / "other"
        other_dir.mkdir()
        other_root, _ = make_pki(other_dir)
        connector.version += 1
        other_pem = Path(other_root).read_text()
        await connector.driver.conn.send(protocol.Config(version=connector.version, config=config, origin_ca=other_pem))
        await wait_until(lambda: connector.supervisor.dataplane.tls.origin_ca_pem == other_pem)
        retired = await connector.driver.fetch("/hello")
    assert untrusted.reset is not None and "unknown authority" in untrusted.reset.message
    assert trusted.response is not None and trusted.response.status == 200, trusted.reset
    # (The other root has the same subject: OpenSSL finds it by name and the signature check fails.)
    assert retired.reset is not None and "TLS verification of the origin certificate failed" in retired.reset.message


async def test_unix_tls_origin(edge, tmp_path, parser):
    ca_file, context = make_pki(tmp_path, names=("app.example.com",))
    path = str(tmp_path / "tls.sock")
    origin = await standard_origin().start(unix_path=path, ssl=context)
    try:
        async with Connector(edge, rules(f"unix+tls:{path}", {"caPool": ca_file})) as connector:
            result = await connector.driver.fetch("/hello")
        assert result.response.status == 200  # verified against the request host
    finally:
        await origin.stop()


async def test_unreadable_ca_pool(edge, origin, tmp_path):
    missing = str(tmp_path / "missing.pem")
    async with Connector(edge, rules(f"https://127.0.0.1:{origin.port}", {"caPool": missing})) as connector:
        result = await connector.driver.fetch("/")
    assert result.reset.message.startswith(f"cannot load caPool file {missing}")
