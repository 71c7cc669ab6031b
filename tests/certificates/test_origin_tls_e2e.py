"""The tutorial's last step, for real: a certificate issued by the Origin CA through the official SDK (against a
live server), installed on a Python `ssl` HTTPS origin on loopback, reached through a real connector with the public
hostname's originServerName: 200. A self-signed origin: 502, the connector's log saying why and what to do; the
same origin with noTLSVerify: 200."""

from __future__ import annotations

import datetime
import http.client
import http.server
import ssl
import time
from pathlib import Path

import cloudflare
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certificates.logic import pki
from tests.live_server import run_daphne, serve_in_thread, start_connector

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = b"hello over verified TLS"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def tls_server_class(cert_file: Path, key_file: Path) -> type:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)

    class TLSServer(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def get_request(self):
            sock, address = super().get_request()
            return context.wrap_socket(sock, server_side=True), address

    return TLSServer


def self_signed(tmp: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "self.pem", tmp / "self.key"
    cert_file.write_bytes(cert.public_bytes(pki.serialization.Encoding.PEM))
    key_file.write_text(pki.key_pem(key))
    return cert_file, key_file


def visit(port: int, host: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/", headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_for_log(path: Path, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = path.read_text(errors="replace")
        if text in log:
            return log
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the connector log:\n{path.read_text(errors='replace')[-4000:]}")


def test_origin_ca_certificate_on_an_https_origin_gets_200_self_signed_502(tmp_path):
    from controlplane.actors import Actor
    from controlplane.services.zones import zone_create, zone_mark_verified
    from tests.conftest import make_token
    from tests.factories import OrganisationFactory
    from tunnels.services import tunnel_config_update, tunnel_create, tunnel_token

    actor = Actor.cli()
    org = OrganisationFactory(team_name="alpha", display_name="Alpha")
    zone_mark_verified(zone=zone_create(organisation=org, name="example.com", actor=actor), actor=actor)
    raw_token = make_token(org)
    tunnel = tunnel_create(organisation=org, name="portainer", actor=actor)

    with run_daphne(log_dir=str(tmp_path)) as server:
        # 1. The team admin's automation: a key and CSR of their own, signed through the official SDK.
        cf = cloudflare.Cloudflare(api_token=raw_token, base_url=f"{server.url}/client/v4", max_retries=0)
        key = ec.generate_private_key(ec.SECP256R1())
        created = cf.origin_ca_certificates.create(
            csr=pki.build_csr(key, ["portainer.example.com"]),
            hostnames=["portainer.example.com"],
            request_type="origin-ecc",
            requested_validity=30,
        )
        certificate = cf.origin_ca_certificates.get(created.id).certificate
        assert certificate.startswith("-----BEGIN CERTIFICATE-----")
        (tmp_path / "origin.pem").write_text(certificate)
        (tmp_path / "origin.key").write_text(pki.key_pem(key))
        self_cert, self_key = self_signed(tmp_path, "portainer.example.com")

        with (
            serve_in_thread(Hello, tls_server_class(tmp_path / "origin.pem", tmp_path / "origin.key")) as ca_port,
            serve_in_thread(Hello, tls_server_class(self_cert, self_key)) as self_port,
        ):
            # 2. Public hostnames: the Origin CA origin with and without originServerName; the self-signed one
            # with and without noTLSVerify.
            config = {
                "ingress": [
                    {
                        "hostname": "portainer.example.com",
                        "service": f"https://127.0.0.1:{ca_port}",
                        "originRequest": {"originServerName": "portainer.example.com"},
                    },
                    {"hostname": "noname.example.com", "service": f"https://127.0.0.1:{ca_port}"},
                    {"hostname": "selfsigned.example.com", "service": f"https://127.0.0.1:{self_port}"},
                    {
                        "hostname": "noverify.example.com",
                        "service": f"https://127.0.0.1:{self_port}",
                        "originRequest": {"noTLSVerify": True},
                    },
                    {"service": "http_status:404"},
                ]
            }
            tunnel_config_update(tunnel=tunnel, config=config, actor=actor)
            log_path = tmp_path / "connector.log"
            connector = start_connector(tunnel_token(tunnel), server.url, log_path, ha_connections=1)
            try:
                wait_for_log(log_path, "Origin CA roots updated")
                wait_for_log(log_path, "Updated to new configuration")

                assert visit(server.port, "portainer.example.com") == (200, b"hello over verified TLS")
                assert visit(server.port, "noverify.example.com") == (200, b"hello over verified TLS")

                status, _ = visit(server.port, "selfsigned.example.com")
                assert status == 502
                log = wait_for_log(log_path, "certificate signed by unknown authority")
                assert "set the origin server name, install an Origin CA certificate, or enable No TLS verify" in log

                # Without originServerName the expected name is the service's host (127.0.0.1), which the
                # certificate does not carry: 502, naming the mismatch.
                status, _ = visit(server.port, "noname.example.com")
                assert status == 502
                wait_for_log(log_path, "'127.0.0.1'")
            finally:
                connector.terminate()
                connector.wait(10)
