"""Password reset by email: the mail goes through the Celery task into the outbox, and its link sets a password."""

from __future__ import annotations

import datetime
import re

import pytest
from django.utils import timezone

from controlplane.models import OutboxMessage, User
from tests.factories import DEFAULT_PASSWORD

NEW_PASSWORD = "a-brand-new-passphrase-42"


@pytest.fixture
def outbox_mail(settings):
    settings.EMAIL_BACKEND = "controlplane.mail.OutboxEmailBackend"
    settings.EMAIL_OUTBOX_MODE = True
    return lambda: list(OutboxMessage.objects.unscoped("installation-wide mail, in a test").order_by("created_at"))


def test_reset_page_explains_the_outbox_in_embedded_mode(client, db, settings):
    settings.EMAIL_OUTBOX_MODE = True
    assert "python manage.py outbox" in client.get("/password-reset/").content.decode()
    settings.EMAIL_OUTBOX_MODE = False
    assert "python manage.py outbox" not in client.get("/password-reset/").content.decode()


def test_reset_mail_lands_in_the_outbox_and_its_link_sets_a_new_password(
    client, admin_a, outbox_mail, django_capture_on_commit_callbacks, settings
):
    User.objects.filter(pk=admin_a.pk).update(
        failed_logins=2, lockouts=1, locked_until=timezone.now() + datetime.timedelta(hours=1)
    )
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post("/password-reset/", {"email": "ADMIN@alpha.test"})
    assert response.url == "/password-reset/sent/"
    assert len(callbacks) == 1  # queued on commit, as a Celery task
    [message] = outbox_mail()
    assert message.organisation_id is None and message.to == [admin_a.email]
    link = re.search(r"(https?://\S+/reset/\S+/)", message.body).group(1)
    assert link.startswith(settings.PUBLIC_URL)

    path = link[len(settings.PUBLIC_URL) :]
    form_page = client.get(path, follow=True)
    assert form_page.status_code == 200 and b'name="new_password1"' in form_page.content
    set_url = form_page.redirect_chain[-1][0]
    mismatch = client.post(set_url, {"new_password1": NEW_PASSWORD, "new_password2": "something else"})
    assert "didn’t match" in mismatch.content.decode() or "didn't match" in mismatch.content.decode()
    done = client.post(set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.url == "/reset/done/"
    assert client.get(done.url).status_code == 200

    admin_a.refresh_from_db()
    assert admin_a.check_password(NEW_PASSWORD)
    assert (admin_a.failed_logins, admin_a.lockouts, admin_a.locked_until) == (0, 0, None)
    assert client.post("/login/", {"email": admin_a.email, "password": NEW_PASSWORD}).status_code == 302

    # The link works once.
    client.post("/logout/")
    assert "does not work" in client.get(path, follow=True).content.decode()


def test_unknown_email_gets_the_same_answer_and_no_mail(client, db, outbox_mail, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/password-reset/", {"email": "nobody@alpha.test"})
    assert response.url == "/password-reset/sent/"
    assert outbox_mail() == []


def test_invalid_email_is_an_inline_error(client, db):
    response = client.post("/password-reset/", {"email": "nope"})
    assert response.status_code == 200 and "Enter a valid email address." in response.content.decode()


def test_password_change_for_a_signed_in_user(admin_client, admin_a):
    assert admin_client.get("/account/password/").status_code == 200
    wrong = admin_client.post(
        "/account/password/", {"old_password": "nope", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert wrong.status_code == 200 and "incorrect" in wrong.content.decode()
    response = admin_client.post(
        "/account/password/",
        {"old_password": DEFAULT_PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.url == "/account/"
    admin_a.refresh_from_db()
    assert admin_a.check_password(NEW_PASSWORD)


def test_reset_requests_are_limited_per_client_address(client, admin_a, settings, django_capture_on_commit_callbacks):
    settings.EMAIL_BACKEND = "controlplane.mail.OutboxEmailBackend"
    from controlplane.models import OutboxMessage
    from controlplane.services.auth import PASSWORD_RESET_PER_IP_PER_HOUR

    for _ in range(PASSWORD_RESET_PER_IP_PER_HOUR):
        with django_capture_on_commit_callbacks(execute=True):
            assert client.post("/password-reset/", {"email": admin_a.email}).status_code == 302
    response = client.post("/password-reset/", {"email": admin_a.email})
    assert response.status_code == 429 and "Too many reset requests" in response.content.decode()
    sent = [m for m in OutboxMessage.objects.unscoped("test: installation-wide mail") if admin_a.email in m.to]
    assert len(sent) == PASSWORD_RESET_PER_IP_PER_HOUR
