"""The signed-in path's reads, prepared (issue 13): the session row (controlplane/sessions.py), the user and the 2FA
device (controlplane/second_factor.py) and the membership with its organisation (controlplane/access.py) give what
Django's, django-otp's and the ORM's own reads give, and nothing is remembered between requests: signing out, a
revoked session, a password change, a removed second factor, a removed membership and a changed role take effect on
the very next page. The organisation requires 2FA (the product's default) and the sessions passed it."""

from __future__ import annotations

import datetime

import pytest
from django.contrib import auth
from django.contrib.auth import HASH_SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore as DjangoSessionStore
from django.contrib.sessions.models import Session
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice

from controlplane.access import membership_with_organisation
from controlplane.choices import Role
from controlplane.models import Membership
from controlplane.second_factor import device_from_persistent_id, get_user
from controlplane.sessions import SessionStore
from tests.controlplane.ui.conftest import add_second_factor, sign_in
from tests.factories import MembershipFactory, UserFactory


@pytest.fixture
def org_a(org_a):
    org_a.require_2fa = True  # the product's default (the factory's is off)
    org_a.save()
    return org_a


@pytest.fixture
def verified(client, admin_a, org_a):
    """admin_a signed in with the second factor passed, on the tunnel list once (its last organisation recorded)."""
    device = add_second_factor(admin_a)
    sign_in(client, admin_a, device=device)
    assert client.get(tunnels_url(org_a)).status_code == 200
    return device


def tunnels_url(org):
    return reverse("ui:tunnels", args=[org.account_id])


def test_the_session_engine_is_the_prepared_one(settings):
    assert settings.SESSION_ENGINE == "controlplane.sessions"
    assert issubclass(SessionStore, DjangoSessionStore)


def test_a_session_reads_as_djangos_and_an_expired_or_unknown_one_is_no_session(db):
    store = SessionStore()
    store["answer"] = 42
    store.save()
    assert SessionStore(store.session_key).load() == DjangoSessionStore(store.session_key).load() == {"answer": 42}
    Session.objects.filter(session_key=store.session_key).update(expire_date=timezone.now() - datetime.timedelta(1))
    for unknown in (store.session_key, "x" * 32):
        ours, django = SessionStore(unknown), DjangoSessionStore(unknown)
        assert ours.load() == django.load() == {}
        assert ours.session_key is None and django.session_key is None
        ours["k"] = 1
        ours.save()  # a session the browser named but the server does not hold gets a new key (no fixation)
        assert ours.session_key not in (None, unknown)


def test_get_user_is_djangos_get_user(client, admin_a, settings):
    class Request:
        def __init__(self, session):
            self.session = session

    def both(session_key):
        return get_user(Request(SessionStore(session_key))), auth.get_user(Request(SessionStore(session_key)))

    client.force_login(admin_a)
    key = client.session.session_key
    ours, django = both(key)
    assert ours == django == admin_a and ours.__dict__.keys() == django.__dict__.keys()
    assert all(getattr(ours, f.attname) == getattr(django, f.attname) for f in type(ours)._meta.concrete_fields)

    type(admin_a).objects.filter(pk=admin_a.pk).update(is_active=False)  # may not sign in: anonymous
    assert [u.is_authenticated for u in both(key)] == [False, False]
    type(admin_a).objects.filter(pk=admin_a.pk).update(is_active=True)

    # A hash made with a previous secret key (SECRET_KEY_FALLBACKS) moves the session to a new key, keeping the user.
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-" + "x" * 40
    request = Request(SessionStore(key))
    assert get_user(request) == admin_a and request.session.session_key != key
    assert request.session[HASH_SESSION_KEY] == admin_a.get_session_auth_hash()

    settings.SECRET_KEY_FALLBACKS = []  # a hash of no known secret: signed out, the session flushed
    request = Request(SessionStore(key))
    assert not get_user(request).is_authenticated and request.session.session_key is None


def test_device_from_persistent_id_is_django_otps(admin_a):
    totp = add_second_factor(admin_a)
    static = StaticDevice.objects.get(user=admin_a)
    ids = [
        totp.persistent_id,
        static.persistent_id,
        f"{totp.model_label()}/{totp.pk + 1000}",  # no such row
        f"{totp.model_label()}/{2**40}",  # beyond the column's range
        f"{totp.model_label()}/seven",
        "otp_totp.nosuchmodel/1",
        "nonsense",
    ]
    for persistent_id in ids:
        ours, theirs = device_from_persistent_id(persistent_id), Device.from_persistent_id(persistent_id)
        assert ours == theirs and type(ours) is type(theirs), persistent_id
        if ours is not None:
            assert all(getattr(ours, f.attname) == getattr(theirs, f.attname) for f in type(ours)._meta.concrete_fields)


def test_membership_with_organisation_is_the_select_related_read(admin_a, org_a, org_b, admin_b):
    expected = Membership.objects.filter(organisation_id=org_a.pk, user=admin_a).select_related("organisation").first()
    membership = membership_with_organisation(organisation_id=org_a.pk, user=admin_a)
    assert membership == expected and membership.role == expected.role
    for field in Membership._meta.concrete_fields:
        assert getattr(membership, field.attname) == getattr(expected, field.attname)
    with CaptureQueriesContext(connection) as queries:
        organisation = membership.organisation  # cached, as select_related caches it
    assert len(queries) == 0
    for field in type(organisation)._meta.concrete_fields:
        assert getattr(organisation, field.attname) == getattr(expected.organisation, field.attname)
    assert organisation.require_2fa is True and not membership._state.adding
    # Another organisation's membership is nobody's here: the organisation and the user both decide.
    assert membership_with_organisation(organisation_id=org_b.pk, user=admin_a) is None
    assert membership_with_organisation(organisation_id=org_a.pk, user=admin_b) is None


def test_signing_out_takes_effect_at_once(client, org_a, verified):
    client.post(reverse("ui:logout"))
    response = client.get(tunnels_url(org_a))
    assert response.status_code == 302 and reverse("ui:login") in response["Location"]


def test_a_revoked_session_takes_effect_at_once(client, org_a, verified):
    Session.objects.filter(session_key=client.session.session_key).delete()
    response = client.get(tunnels_url(org_a))
    assert response.status_code == 302 and reverse("ui:login") in response["Location"]


def test_a_password_change_signs_other_sessions_out_at_once(client, admin_a, org_a, verified):
    admin_a.set_password("a-brand-new-password-1")
    admin_a.save()
    response = client.get(tunnels_url(org_a))
    assert response.status_code == 302 and reverse("ui:login") in response["Location"]


def test_removing_the_second_factor_takes_effect_at_once(client, admin_a, org_a, verified):
    verified.delete()
    response = client.get(tunnels_url(org_a))
    # The session no longer counts as verified: the organisation's 2FA rule sends it to enrol an authenticator
    # instead of the page.
    assert response.status_code == 302 and reverse("ui:two-factor") in response["Location"]
    assert DEVICE_ID_SESSION_KEY not in client.session


def test_leaving_the_organisation_takes_effect_at_once(client, admin_a, org_a, verified):
    Membership.objects.for_org(org_a).filter(user=admin_a).delete()
    MembershipFactory(organisation=org_a, user=UserFactory(), role=Role.SUPER_ADMIN)  # someone else stays
    response = client.get(tunnels_url(org_a))
    assert response.status_code == 404 and b"data-tunnel-table" not in response.content


def test_a_role_change_takes_effect_at_once(client, admin_a, org_a, verified):
    assert b'id="create"' in client.get(tunnels_url(org_a)).content
    Membership.objects.for_org(org_a).filter(user=admin_a).update(role=Role.READ_ONLY)
    page = client.get(tunnels_url(org_a))
    assert page.status_code == 200 and b'id="create"' not in page.content
    response = client.post(tunnels_url(org_a), {"name": "not-allowed"})
    assert response.status_code == 403


def test_a_session_that_did_not_pass_the_second_factor_gets_no_page(client, admin_a, org_a):
    add_second_factor(admin_a)
    sign_in(client, admin_a)  # password only
    response = client.get(tunnels_url(org_a))
    assert response.status_code == 302 and reverse("ui:login-verify") in response["Location"]
