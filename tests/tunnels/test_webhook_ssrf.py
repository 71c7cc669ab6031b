"""Webhook notifications are no server-side request forgery (issue 14, item 4): internal and own addresses are
refused when saved and again when sent (after resolving, at the pinned address), and redirects are not followed.
Real HTTP servers on loopback stand for the internal services an attacker would aim at."""

from __future__ import annotations

import http.server
import logging
import socket

import pytest
from django.core.exceptions import ValidationError

from controlplane.actors import Actor
from tests.live_server import serve_in_thread
from tunnels.models import NotificationDestination
from tunnels.notifications import alert_payload
from tunnels.services import notification_destination_create, tunnel_create
from tunnels.tasks import deliver_alert
from tunnels.webhooks import WebhookRefused, webhook_post

SECRET = "s3cret-signing-key-0123"


def recording_handler(status: int = 204, location: str | None = None):
    class Handler(http.server.BaseHTTPRequestHandler):
        received: list[tuple[str, str]] = []

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            Handler.received.append((self.path, self.headers.get("Host", "")))
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def internal_service():
    """An 'internal' HTTP service on loopback, recording what reaches it."""
    handler = recording_handler()
    with serve_in_thread(handler) as port:
        yield port, handler.received


def create_webhook(org, url: str) -> NotificationDestination:
    return notification_destination_create(
        organisation=org, actor=Actor.cli(), name="hook", kind="webhook", url=url, secret=SECRET
    )


def deliver(org, destination) -> None:
    tunnel = tunnel_create(organisation=org, name=f"t-{destination.pk.hex[:8]}", actor=Actor.cli())
    payload = alert_payload(tunnel=tunnel, alert_type="tunnel_update_event", status="inactive", text="test")
    deliver_alert(organisation_id=str(org.pk), destination_id=str(destination.pk), payload=payload)


REFUSED_ALWAYS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/hook",
    "http://224.0.0.1/hook",
    "http://0.0.0.0/hook",
    "http://[::]/hook",
    "http://240.0.0.1/hook",
    "http://localhost:9/hook",
    "http://api.localhost/hook",
    "http://alpha.access.localhost/hook",  # a team domain of this installation
    "https://zt.example.org/client/v4/",  # PUBLIC_URL's host
    "http://127.0.0.1:8000/client/v4/",  # the control plane's own origin, even with private ranges allowed
    "http://user:pw@93.184.216.34/hook",
]
REFUSED_UNLESS_PRIVATE_ALLOWED = [
    "http://127.0.0.1:{port}/hook",
    "http://127.7.7.7:{port}/hook",
    "http://[::1]:{port}/hook",
    "http://[::ffff:127.0.0.1]:{port}/hook",
    "http://10.1.2.3/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.1/hook",
    "http://100.64.0.1/hook",
    "http://[fd00::1]/hook",
    "http://[2002:7f00:1::]/hook",  # 6to4 of 127.0.0.1
    "http://[64:ff9b::a00:1]/hook",  # NAT64 of 10.0.0.1
]


@pytest.fixture
def own_public_url(settings):
    settings.PUBLIC_URL = "http://127.0.0.1:8000"
    settings.CONTROL_PLANE_HOSTS = [*settings.CONTROL_PLANE_HOSTS, "zt.example.org"]


@pytest.mark.django_db
@pytest.mark.parametrize("allow_private", [False, True])
@pytest.mark.parametrize("url", REFUSED_ALWAYS)
def test_internal_and_own_addresses_are_refused_when_saved(org_a, settings, own_public_url, url, allow_private):
    settings.WEBHOOK_ALLOW_PRIVATE = allow_private
    with pytest.raises(ValidationError) as error:
        create_webhook(org_a, url)
    assert "url" in error.value.message_dict
    assert not NotificationDestination.objects.for_org(org_a).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("url", REFUSED_UNLESS_PRIVATE_ALLOWED)
def test_loopback_and_private_addresses_need_the_operator_setting(org_a, settings, internal_service, url):
    port, received = internal_service
    url = url.format(port=port)
    settings.WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(ValidationError, match="public addresses only"):
        create_webhook(org_a, url)
    settings.WEBHOOK_ALLOW_PRIVATE = True
    assert create_webhook(org_a, url).url == url


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "127.1"])
def test_other_spellings_of_loopback_are_refused_at_send_time(settings, internal_service, host):
    """Spellings the save-time URL check refuses anyway; a row holding one still reaches nothing."""
    port, received = internal_service
    settings.WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(WebhookRefused, match="loopback"):
        webhook_post(f"http://{host}:{port}/hook", body=b"{}", headers={}, timeout=2)
    assert received == []


@pytest.mark.django_db
def test_a_public_address_is_accepted(org_a):
    assert create_webhook(org_a, "https://93.184.216.34/hook").kind == "webhook"


@pytest.mark.django_db
def test_a_row_pointing_inside_is_refused_at_send_time(org_a, settings, internal_service, caplog):
    """A destination saved when it was allowed (an older release, or the setting since turned off) delivers
    nothing to the internal service."""
    port, received = internal_service
    settings.WEBHOOK_ALLOW_PRIVATE = True
    destination = create_webhook(org_a, f"http://127.0.0.1:{port}/hook")
    settings.WEBHOOK_ALLOW_PRIVATE = False
    with caplog.at_level(logging.WARNING, logger="tunnels.tasks"):
        deliver(org_a, destination)
    assert received == []
    assert "loopback" in caplog.text


@pytest.mark.django_db
def test_dns_rebinding_a_name_resolving_inside_at_send_time_is_refused(org_a, internal_service, monkeypatch):
    """Saved while the name resolves to a public address (or not at all); at delivery it resolves to loopback."""
    port, received = internal_service
    real_getaddrinfo = socket.getaddrinfo
    answers = {"hooks.rebind.test": "93.184.216.34"}

    def resolver(host, *args, **kwargs):  # the DNS server the attacker controls
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    destination = create_webhook(org_a, f"http://hooks.rebind.test:{port}/hook")
    answers["hooks.rebind.test"] = "127.0.0.1"
    with pytest.raises(WebhookRefused, match="loopback"):
        webhook_post(destination.url, body=b"{}", headers={}, timeout=2)
    deliver(org_a, destination)
    assert received == []


@pytest.mark.django_db
def test_delivery_connects_to_the_checked_address_with_the_name_as_host(org_a, settings, internal_service, monkeypatch):
    """With private ranges allowed, a name resolving to the receiver's address is delivered to that address (the
    one checked), with the name in the Host header."""
    port, received = internal_service
    settings.WEBHOOK_ALLOW_PRIVATE = True
    real_getaddrinfo = socket.getaddrinfo

    def resolver(host, *args, **kwargs):
        if host == "hooks.internal.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    deliver(org_a, create_webhook(org_a, f"http://hooks.internal.test:{port}/hook?x=1"))
    assert received == [("/hook?x=1", f"hooks.internal.test:{port}")]


@pytest.mark.django_db
def test_redirects_are_not_followed_and_not_retried(org_a, settings, internal_service, caplog):
    internal_port, internal_received = internal_service
    redirecting = recording_handler(302, location=f"http://127.0.0.1:{internal_port}/admin")
    settings.WEBHOOK_ALLOW_PRIVATE = True  # both servers are on loopback: only the redirect is under test
    with serve_in_thread(redirecting) as port:
        destination = create_webhook(org_a, f"http://127.0.0.1:{port}/hook")
        with caplog.at_level(logging.WARNING, logger="tunnels.tasks"):
            deliver(org_a, destination)
    assert len(redirecting.received) == 1
    assert internal_received == []
    assert "redirects are not followed" in caplog.text


@pytest.mark.django_db
def test_with_private_ranges_allowed_delivery_to_loopback_works(org_a, settings, internal_service):
    port, received = internal_service
    settings.WEBHOOK_ALLOW_PRIVATE = True
    deliver(org_a, create_webhook(org_a, f"http://127.0.0.1:{port}/hook"))
    assert received == [("/hook", f"127.0.0.1:{port}")]


def test_the_ui_shows_why_a_webhook_url_is_refused(client, admin_a, org_a):
    from tests.controlplane.ui.conftest import add_second_factor, sign_in
    from tests.tunnels.test_ui import url

    sign_in(client, admin_a, device=add_second_factor(admin_a))
    form = {"name": "ops", "kind": "webhook", "secret": "a-long-signing-secret", "health": "on"}
    response = client.post(url("tunnel-notifications", org_a), {**form, "url": "http://169.254.169.254/latest/"})
    assert response.status_code == 200
    assert "link-local" in response.content.decode()
    assert not NotificationDestination.objects.for_org(org_a).exists()


def certificate_for(name: str, folder) -> tuple[str, str]:
    """A self-signed certificate for `name`: (cert path, key path)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


@pytest.mark.parametrize("trusted", [True, False])
def test_https_is_pinned_with_the_name_as_sni_and_certificate_name(settings, tmp_path, monkeypatch, trusted):
    """HTTPS to a name resolving to the receiver: the connection goes to the checked address, the TLS handshake
    names the host (SNI) and the certificate must be valid for it (an untrusted one fails the delivery)."""
    import ssl

    settings.WEBHOOK_ALLOW_PRIVATE = True
    cert_path, key_path = certificate_for("hooks.internal.test", tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_path, key_path)
    names: list[str | None] = []
    server_context.sni_callback = lambda sock, name, context: names.append(name)
    handler = recording_handler()

    class TLSServer(http.server.ThreadingHTTPServer):
        def get_request(self):
            sock, address = super().get_request()
            return server_context.wrap_socket(sock, server_side=True), address

    if trusted:
        monkeypatch.setenv("SSL_CERT_FILE", cert_path)  # the client's default context trusts it
    with serve_in_thread(handler, TLSServer) as port:
        real_getaddrinfo = socket.getaddrinfo

        def resolver(host, *args, **kwargs):
            if host == "hooks.internal.test":
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
            return real_getaddrinfo(host, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", resolver)
        url = f"https://hooks.internal.test:{port}/hook"
        if trusted:
            assert webhook_post(url, body=b"{}", headers={}, timeout=5) == 204
            assert handler.received == [("/hook", f"hooks.internal.test:{port}")]
        else:
            with pytest.raises(ssl.SSLCertVerificationError):
                webhook_post(url, body=b"{}", headers={}, timeout=5)
            assert handler.received == []
    assert names and set(names) == {"hooks.internal.test"}
