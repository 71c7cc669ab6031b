"""Mail: delivered through a real SMTP server (aiosmtpd) or kept in the outbox; EMAIL_URL parsing."""

from __future__ import annotations

import email
import email.policy
import logging
import socket

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from django.core.exceptions import ImproperlyConfigured

from controlplane.actors import Actor
from controlplane.choices import Role
from controlplane.embedded_tasks import runner
from controlplane.mail import ORGANISATION_HEADER, email_send
from controlplane.models import OutboxMessage
from controlplane.services.members import invitation_create
from controlplane.settings.email import parse_email_url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Collector:
    """An aiosmtpd handler that keeps what it receives."""

    def __init__(self) -> None:
        self.envelopes: list = []
        self.logins: list[tuple[str, str]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        self.logins.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=True)

    def messages(self) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(e.original_content, policy=email.policy.default) for e in self.envelopes]


@pytest.fixture
def smtp_server():
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-connection chatter
    collector = Collector()
    controller = Controller(
        collector,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=collector.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    collector.port = controller.port
    try:
        yield collector
    finally:
        controller.stop()


@pytest.fixture
def smtp_settings(settings, smtp_server):
    """Settings exactly as EMAIL_URL=smtp://… produces them, aimed at the test server."""
    for name, value in parse_email_url(f"smtp://127.0.0.1:{smtp_server.port}?timeout=5").items():
        setattr(settings, name, value)
    return settings


def test_an_invitation_is_delivered_by_smtp_without_the_internal_header(
    db, org_a, admin_a, smtp_settings, smtp_server, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        invitation, raw = invitation_create(
            organisation=org_a, email="New.Person@Corp.test", role=Role.READ_ONLY, actor=Actor(user=admin_a)
        )
    assert runner().wait_until_idle(10)  # SMTP is an outbound call: sent off the request's thread

    assert len(smtp_server.envelopes) == 1
    envelope = smtp_server.envelopes[0]
    assert envelope.rcpt_tos == ["new.person@corp.test"]
    message = smtp_server.messages()[0]
    assert message["To"] == "new.person@corp.test"
    assert message["Subject"] == "You are invited to join Alpha on the Zero Trust control plane"
    assert message["From"] == smtp_settings.DEFAULT_FROM_EMAIL
    assert ORGANISATION_HEADER not in message
    assert ORGANISATION_HEADER.lower() not in envelope.original_content.decode().lower()
    body = message.get_body(("plain",)).get_content()
    assert f"{smtp_settings.PUBLIC_URL}/invitations/{raw}/" in body
    assert "admin@alpha.test" in body and "Read only" in body and "alpha." in body
    assert not OutboxMessage.objects.for_org(org_a).exists()


def test_smtp_credentials_from_email_url_are_used(db, settings, smtp_server, django_capture_on_commit_callbacks):
    url = f"smtp://mailer%40corp.test:p%40ss%2Fword@127.0.0.1:{smtp_server.port}"
    for name, value in parse_email_url(url).items():
        setattr(settings, name, value)
    with django_capture_on_commit_callbacks(execute=True):
        email_send(to=["ops@corp.test"], subject="Hello", template="controlplane/email/invitation", context={})
    assert runner().wait_until_idle(10)
    assert smtp_server.logins == [("mailer@corp.test", "p@ss/word")]
    assert smtp_server.envelopes[0].rcpt_tos == ["ops@corp.test"]


def test_nothing_is_sent_when_the_transaction_rolls_back(db, org_a, smtp_settings, smtp_server):
    from django.db import transaction

    with pytest.raises(RuntimeError), transaction.atomic():
        invitation_create(organisation=org_a, email="x@corp.test", role=Role.READ_ONLY, actor=Actor.cli())
        raise RuntimeError("abort")
    assert smtp_server.envelopes == []


def test_in_outbox_mode_the_message_is_kept_with_its_organisation(
    db, org_a, org_b, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "controlplane.mail.OutboxEmailBackend"  # the test runner swaps in locmem
    with django_capture_on_commit_callbacks(execute=True):
        _, raw = invitation_create(organisation=org_a, email="new@corp.test", role=Role.ADMIN, actor=Actor.cli())

    kept = OutboxMessage.objects.for_org(org_a).get()
    assert kept.to == ["new@corp.test"]
    assert kept.subject == "You are invited to join Alpha on the Zero Trust control plane"
    assert f"/invitations/{raw}/" in kept.body
    assert kept.from_email == settings.DEFAULT_FROM_EMAIL
    assert not OutboxMessage.objects.for_org(org_b).exists()


def test_installation_wide_mail_is_kept_without_an_organisation(db, settings, django_capture_on_commit_callbacks):
    settings.EMAIL_BACKEND = "controlplane.mail.OutboxEmailBackend"
    with django_capture_on_commit_callbacks(execute=True):
        email_send(to=["ops@corp.test"], subject="Reset", template="controlplane/email/invitation", context={})
    kept = OutboxMessage.objects.unscoped("test").get()
    assert kept.organisation_id is None and kept.to == ["ops@corp.test"] and kept.subject == "Reset"


# EMAIL_URL


def test_no_email_url_keeps_mail_in_the_outbox():
    for value in (None, "", "  "):
        assert parse_email_url(value) == {
            "EMAIL_BACKEND": "controlplane.mail.OutboxEmailBackend",
            "EMAIL_OUTBOX_MODE": True,
        }


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "smtp://mail.corp.test",
            {"EMAIL_HOST": "mail.corp.test", "EMAIL_PORT": 25, "EMAIL_USE_TLS": False, "EMAIL_USE_SSL": False},
        ),
        ("smtp://mail.corp.test:2525?tls=1", {"EMAIL_PORT": 2525, "EMAIL_USE_TLS": True, "EMAIL_USE_SSL": False}),
        ("smtp://mail.corp.test?tls=true", {"EMAIL_PORT": 25, "EMAIL_USE_TLS": True}),
        ("smtp://mail.corp.test?ssl=1", {"EMAIL_USE_TLS": False, "EMAIL_USE_SSL": True}),
        ("smtps://mail.corp.test", {"EMAIL_PORT": 465, "EMAIL_USE_SSL": True, "EMAIL_USE_TLS": False}),
        ("submission://mail.corp.test", {"EMAIL_PORT": 587, "EMAIL_USE_TLS": True, "EMAIL_USE_SSL": False}),
        (
            "submission://apikey:s%3Acr%40t@smtp.example.net:2587?timeout=30",
            {
                "EMAIL_HOST": "smtp.example.net",
                "EMAIL_PORT": 2587,
                "EMAIL_HOST_USER": "apikey",
                "EMAIL_HOST_PASSWORD": "s:cr@t",
                "EMAIL_TIMEOUT": 30,
            },
        ),
        ("smtp://u@[::1]:26", {"EMAIL_HOST": "::1", "EMAIL_PORT": 26, "EMAIL_HOST_USER": "u"}),
    ],
)
def test_email_url_parsing(url, expected):
    parsed = parse_email_url(url)
    assert parsed["EMAIL_BACKEND"] == "controlplane.mail.SmtpEmailBackend"
    assert parsed["EMAIL_OUTBOX_MODE"] is False
    assert {key: parsed[key] for key in expected} == expected


@pytest.mark.parametrize(
    "url", ["http://mail.corp.test", "mail.corp.test:25", "smtp://mail.corp.test:notaport", "smtp://h?timeout=x"]
)
def test_a_malformed_email_url_fails_fast(url):
    with pytest.raises(ImproperlyConfigured, match="EMAIL_URL"):
        parse_email_url(url)
