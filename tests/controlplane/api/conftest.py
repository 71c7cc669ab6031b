"""The official Cloudflare SDK driving the real WSGI application in-process, over real HTTP semantics."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import cloudflare
import httpx
import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client

import controlplane.wsgi
from controlplane.choices import Role
from tests.conftest import make_token
from tests.factories import MembershipFactory, UserFactory

BASE_URL = "http://testserver/client/v4"


@pytest.fixture(autouse=True)
def _keep_test_connection(monkeypatch) -> Iterator[None]:
    """The WSGI handler closes the database connection around each request (as in production); inside a test's
    transaction that would lose the test data, so it is kept open, as Django's own test client does."""
    for variable in ("CLOUDFLARE_API_TOKEN", "CLOUDFLARE_API_KEY", "CLOUDFLARE_EMAIL", "CLOUDFLARE_BASE_URL"):
        monkeypatch.delenv(variable, raising=False)
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def http_client(**kwargs) -> httpx.Client:
    return httpx.Client(
        transport=httpx.WSGITransport(app=controlplane.wsgi.application), base_url="http://testserver", **kwargs
    )


def token_sdk(raw: str) -> cloudflare.Cloudflare:
    return cloudflare.Cloudflare(api_token=raw, base_url=BASE_URL, http_client=http_client(), max_retries=0)


def session_sdk(user) -> cloudflare.Cloudflare:
    """The SDK as a signed-in UI user: the session cookie and a CSRF token instead of a bearer token."""
    browser = Client()
    browser.force_login(user)
    csrf = _get_new_csrf_string()
    cookies = {"sessionid": browser.cookies["sessionid"].value, "csrftoken": csrf}

    def drop_bearer(request: httpx.Request) -> None:
        # The SDK insists on some credential; the placeholder token is taken off before it is sent.
        del request.headers["Authorization"]

    return cloudflare.Cloudflare(
        api_token="session",
        base_url=BASE_URL,
        http_client=http_client(cookies=cookies, event_hooks={"request": [drop_bearer]}),
        max_retries=0,
        default_headers={"X-CSRFToken": csrf},
    )


@pytest.fixture
def sdk_a(token_a) -> cloudflare.Cloudflare:
    """Org A's SDK with a token that edits every grantable resource group."""
    return token_sdk(token_a)


@pytest.fixture
def admin_sdk_a(admin_a) -> cloudflare.Cloudflare:
    """Org A's Super Administrator, signed in (token management is for people, not tokens)."""
    return session_sdk(admin_a)


@pytest.fixture
def make_sdk() -> Callable[..., cloudflare.Cloudflare]:
    def build(organisation, grants=None, **kwargs) -> cloudflare.Cloudflare:
        return token_sdk(make_token(organisation, grants, **kwargs))

    return build


@pytest.fixture
def member_of():
    def build(organisation, email: str, role: str = Role.READ_ONLY):
        return MembershipFactory(organisation=organisation, user=UserFactory(email=email), role=role)

    return build


@pytest.fixture
def raw_http():
    """A plain httpx client on the same app, for what the SDK cannot send (bad JSON, odd methods)."""
    with http_client() as client:
        yield client
