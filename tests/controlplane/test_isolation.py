"""The isolation matrix, over EVERY URL pattern of the project (UI and API, found by walking the resolver, so
that routes added later are covered without anyone remembering to):

* another organisation's member (its Super Administrator, by session, and its API token) gets 404 for every
  method on organisation A's URLs, and A's data is unchanged;
* A's read-only member (by session, and a read-only token) gets 403 (or 405) for every write, and nothing changes;
* anonymous callers get 401 from the API and are sent to the sign-in page by the UI.

A pattern whose URL names an organisation's object is filled from `REGISTRY`, keyed by the kwarg name. A new kwarg
name fails `test_every_url_pattern_is_classified` until it is added there; a pattern without organisation kwargs
must be listed in `NOT_ORGANISATION_SCOPED` with the reason it is safe."""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.apps import apps
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.converters import UUIDConverter
from django.urls.resolvers import RoutePattern
from django.utils import timezone

from controlplane.actors import Actor
from controlplane.choices import ALL_READ, TOKEN_RESOURCES, Role
from controlplane.models import ApiToken, AuditEvent, Organisation, OutboxMessage
from controlplane.services.audit import audit_record
from controlplane.services.members import invitation_create
from controlplane.services.zones import zone_create
from tests.conftest import make_token
from tests.factories import MembershipFactory, UserFactory

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
WRITE_METHODS = ["POST", "PUT", "PATCH", "DELETE"]
API_PREFIX = "client/v4/"

# Patterns that name no organisation, each with the reason it cannot leak one organisation's data to another.
NOT_ORGANISATION_SCOPED: dict[str, str] = {
    # API
    "client/v4/accounts": "lists the caller's own organisations only (tests/controlplane/api/test_accounts.py)",
    "client/v4/user/tokens/verify": "describes the bearer token itself, nothing else",
    "client/v4/zones": "lists zones of the caller's organisations; a create resolves the account named in the body "
    "with the same access check (tests/controlplane/api/test_zones.py)",
    "client/v4/schema": "the public OpenAPI schema",
    "client/v4/certificates": "names no account, as Cloudflare's: a list resolves `zone_id` (or the caller's own "
    "organisations), a create the hostnames' zones, both with the same access check "
    "(tests/certificates/test_api_sdk.py)",
    "client/v4/origin_ca/roots": "the installation's Origin CA root certificates, the same for every caller",
    "client/v4/<path:unknown>": "answers 404 for any path no API endpoint matched",
    "docs/api/": "the public API documentation page",
    # UI: signing in and out, one's own account, creating an organisation
    "": "home: redirects to the signed-in user's organisation or to sign-in",
    "login/": "sign-in",
    "login/verify/": "second factor of the signing-in user",
    "logout/": "sign-out",
    "password-reset/": "asks for a reset email (answers the same for any address)",
    "password-reset/sent/": "static confirmation",
    "reset/<uidb64>/<token>/": "a reset link is its own authority (signed token)",
    "reset/done/": "static confirmation",
    "account/": "the signed-in user's own profile",
    "account/password/": "the signed-in user's own password",
    "account/two-factor/": "the signed-in user's own second factor",
    "account/two-factor/backup-codes/": "the signed-in user's own backup codes",
    "account/two-factor/remove/": "the signed-in user's own second factor",
    "organisations/new/": "creates a new organisation owned by the signed-in user",
    "invitations/<str:secret>/": "an invitation link is its own authority (hashed secret)",
    # Access pages of a team domain: the organisation comes from the Host (<team>.<AUTH_DOMAIN>), never from the
    # URL, and they are served on team domains only (tests/access/test_login.py proves both).
    "cdn-cgi/access/login/<str:app_host>": "the team domain's login page; the application must be that team's",
    "cdn-cgi/access/certs": "the team's public keys (JWKS), public by design",
    "cdn-cgi/access/get-identity": "the identity in the visitor's own session cookie",
    "cdn-cgi/access/logout": "ends the visitor's own session",
    # Public files and probes
    "healthz": "liveness probe: says only that the process answers",
    "readyz": "readiness probe: says only whether the database (and Redis) answer",
    "connector/download/<str:filename>": "the connector's installable package, the same for everyone",
    "origin-ca/roots.pem": "the Origin CA's public root certificates, the same for everyone",
    ".well-known/origin-ca.pem": "the Origin CA's public root certificates, the same for everyone",
    "origin-ca/crl/<str:root_file>": "a CRL: the revoked serials of one root, public by nature (an origin's "
    "certificate names it)",
}


class World:
    """Organisation A's objects, created on first use, that URL kwargs point at."""

    def __init__(self, org_a: Organisation, admin_a: Any) -> None:
        self.org_a = org_a
        self.admin = Actor(user=admin_a)

    @functools.cached_property
    def zone(self):
        return zone_create(organisation=self.org_a, name="isolation.example", actor=self.admin)

    @functools.cached_property
    def membership(self):
        user = UserFactory(email="tunnels@alpha.test")
        return MembershipFactory(organisation=self.org_a, user=user, role=Role.TUNNEL_ADMIN)

    @functools.cached_property
    def invitation(self):
        return invitation_create(organisation=self.org_a, email="invitee@example.org", role="admin", actor=self.admin)[
            0
        ]

    @functools.cached_property
    def api_token(self):
        make_token(self.org_a, {"zones": "read"})
        return ApiToken.objects.for_org(self.org_a).order_by("-created_at").first()

    @functools.cached_property
    def event(self) -> AuditEvent:
        return audit_record(
            organisation=self.org_a, actor=self.admin, action="update", resource_type="organisation", resource_name="a"
        )

    @functools.cached_property
    def message(self):
        return OutboxMessage.objects.create(
            organisation=self.org_a, from_email="cp@example.org", to=["x@example.org"], subject="s", body="b"
        )

    @functools.cached_property
    def tunnel(self):
        from tunnels.services import tunnel_create

        return tunnel_create(organisation=self.org_a, name="isolation", actor=self.admin)

    @functools.cached_property
    def connector(self):
        from tunnels.models import Connector

        now = timezone.now()
        return Connector.objects.create(
            organisation=self.org_a, tunnel=self.tunnel, connector_id=uuid.uuid4(), run_at=now, last_seen_at=now
        )

    @functools.cached_property
    def hostname_index(self) -> int:
        """Index of a public hostname rule in the tunnel's configuration."""
        from controlplane.services.zones import zone_mark_verified
        from tunnels.services import tunnel_config_update

        zone = zone_create(organisation=self.org_a, name="routes.example", actor=self.admin)
        zone_mark_verified(zone=zone, actor=self.admin)
        config = {
            "ingress": [
                {"hostname": "app.routes.example", "service": "http://localhost:1"},
                {"service": "http_status:404"},
            ]
        }
        tunnel_config_update(tunnel=self.tunnel, config=config, actor=self.admin)
        return 0

    @functools.cached_property
    def dns_record(self):
        from controlplane.services.dns import dns_record_create

        return dns_record_create(zone=self.zone, actor=self.admin, type="A", name="www", content="192.0.2.10")

    @functools.cached_property
    def certificate(self):
        from certificates.services import certificate_create, certificate_issue
        from controlplane.services.zones import zone_mark_verified

        zone = zone_create(organisation=self.org_a, name="certs.example", actor=self.admin)
        zone_mark_verified(zone=zone, actor=self.admin)
        certificate = certificate_create(
            organisation=self.org_a, actor=self.admin, hostnames=["certs.example"], request_type="origin-ecc"
        )
        certificate_issue(organisation_id=str(self.org_a.pk), certificate_id=certificate.id)
        return certificate

    @functools.cached_property
    def destination(self):
        from tunnels.services import notification_destination_create

        return notification_destination_create(
            organisation=self.org_a, actor=self.admin, name="ops", kind="email", emails=["ops@alpha.test"]
        )

    @functools.cached_property
    def access_policy(self):
        from access.services.policies import policy_save

        data = {"name": "staff", "decision": "allow", "include": [{"email_domain": {"domain": "alpha.test"}}]}
        return policy_save(organisation=self.org_a, actor=self.admin, data=data)

    @functools.cached_property
    def access_app(self):
        from access.services.applications import application_save
        from controlplane.services.zones import zone_mark_verified

        zone = zone_create(organisation=self.org_a, name="apps.example", actor=self.admin)
        zone_mark_verified(zone=zone, actor=self.admin)
        data = {"name": "tool", "domain": "tool.apps.example", "policies": [str(self.access_policy.pk)]}
        return application_save(organisation=self.org_a, actor=self.admin, data=data)

    @functools.cached_property
    def access_group(self):
        from access.services.directory import group_save

        data = {"name": "admins", "include": [{"email": {"email": "a@alpha.test"}}]}
        return group_save(organisation=self.org_a, actor=self.admin, data=data)

    @functools.cached_property
    def access_list(self):
        from access.services.directory import list_save

        data = {"name": "staff", "type": "EMAIL", "items": [{"value": "a@alpha.test"}]}
        return list_save(organisation=self.org_a, actor=self.admin, data=data)

    @functools.cached_property
    def service_token(self):
        from access.services.directory import service_token_create

        return service_token_create(organisation=self.org_a, actor=self.admin, data={"name": "ci"})[0]

    @functools.cached_property
    def identity_provider(self):
        from access.services.directory import one_time_pin_provider

        return one_time_pin_provider(self.org_a)


# URL kwarg name -> organisation A's value for it. Add new object kwargs here.
REGISTRY: dict[str, Callable[[World], Any]] = {
    "account_id": lambda world: world.org_a.id,
    "zone_id": lambda world: world.zone.id,
    "member_id": lambda world: world.membership.pk,
    "invitation_id": lambda world: world.invitation.id,
    "token_id": lambda world: world.api_token.id,
    "event_id": lambda world: world.event.id,
    "message_id": lambda world: world.message.id,
    "role_id": lambda world: Role.READ_ONLY.value,
    "tunnel_id": lambda world: world.tunnel.id,
    "connector_id": lambda world: world.connector.connector_id,
    "index": lambda world: world.hostname_index,
    "destination_id": lambda world: world.destination.id,
    "record_id": lambda world: world.dns_record.id,
    "app_id": lambda world: world.access_app.id,
    "policy_id": lambda world: world.access_policy.id,
    "group_id": lambda world: world.access_group.id,
    "list_id": lambda world: world.access_list.id,
    "service_token_id": lambda world: world.service_token.id,
    "idp_id": lambda world: world.identity_provider.id,
    "certificate_id": lambda world: world.certificate.id,
}


@dataclass(frozen=True)
class Route:
    route: str  # e.g. "client/v4/accounts/<str:account_id>/members"
    converters: tuple[tuple[str, Any], ...]
    regex_only: bool

    @property
    def kwargs(self) -> list[str]:
        return [name for name, _ in self.converters]

    @property
    def is_api(self) -> bool:
        return self.route.startswith(API_PREFIX)

    def __str__(self) -> str:
        return "/" + self.route


def _walk(patterns: list[Any], prefix: str, converters: tuple, regex_only: bool) -> Iterator[Route]:
    for pattern in patterns:
        matcher = pattern.pattern
        route_pattern = isinstance(matcher, RoutePattern)
        own = tuple(matcher.converters.items()) if route_pattern else ()
        if not route_pattern and getattr(matcher, "regex", None) is not None and matcher.regex.groupindex:
            own = tuple((name, None) for name in matcher.regex.groupindex)
        route = prefix + str(matcher)
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, route, converters + own, regex_only or not route_pattern)
        elif isinstance(pattern, URLPattern):
            yield Route(route=route, converters=converters + own, regex_only=regex_only or not route_pattern)


def all_routes() -> list[Route]:
    return list(_walk(get_resolver().url_patterns, "", (), False))


def organisation_routes() -> list[Route]:
    return [route for route in all_routes() if route.route not in NOT_ORGANISATION_SCOPED]


def test_every_url_pattern_is_classified():
    problems = []
    routes = all_routes()
    for route in routes:
        if route.route in NOT_ORGANISATION_SCOPED:
            continue
        if route.regex_only:
            problems.append(f"{route}: a regex pattern; use path() so the isolation test can fill its kwargs")
        elif not route.kwargs:
            problems.append(
                f"{route}: names no organisation. If it cannot expose one organisation's data to another, add it "
                f"to NOT_ORGANISATION_SCOPED in {__file__} with the reason; otherwise put it under an account_id."
            )
        for name in route.kwargs:
            if name not in REGISTRY:
                problems.append(
                    f"{route}: unknown URL kwarg “{name}”. Add it to REGISTRY in {__file__} (a function returning "
                    f"organisation A's object id for it), so the isolation matrix covers this route."
                )
    stale = set(NOT_ORGANISATION_SCOPED) - {route.route for route in routes}
    problems += [f"/{entry}: listed in NOT_ORGANISATION_SCOPED but no longer a URL pattern" for entry in stale]
    assert not problems, "\n".join(problems)


def build_url(route: Route, world: World) -> str:
    url = route.route
    for name, converter in route.converters:
        if name not in REGISTRY:
            pytest.fail(f"{route}: unknown URL kwarg “{name}”: add it to REGISTRY in {__file__}.")
        value = REGISTRY[name](world)
        if isinstance(value, uuid.UUID) and not isinstance(converter, UUIDConverter):
            text = value.hex  # the API's (and UI's) 32-hex form
        else:
            text = str(converter.to_url(value) if converter is not None else value)
        url = re.sub(rf"<(?:\w+:)?{name}>", lambda _, text=text: text, url, count=1)
    url = "/" + url
    resolve(url)  # the filled URL reaches this very pattern's view
    return url


# --- the principals ----------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # Users are created by the dozen here; the real hasher's deliberate slowness would dominate the run.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(org_a, admin_a, reader_a) -> World:
    return World(org_a, admin_a)


def session_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def token_client(raw: str) -> Client:
    return Client(headers={"Authorization": f"Bearer {raw}"})


def request(client: Client, method: str, url: str, *, api: bool):
    if api:
        return client.generic(method, url, data=b"{}", content_type="application/json")
    return client.generic(method, url, data=b"", content_type="application/x-www-form-urlencoded")


VOLATILE_COLUMNS = {"last_used_at", "last_login", "last_seen_at", "updated_at"}


def database_state() -> dict[str, list[tuple]]:
    """Every row of every table (sessions aside), through the unscoped base manager."""
    state = {}
    for model in apps.get_models():
        if model is Session:
            continue
        columns = [f.attname for f in model._meta.concrete_fields if f.attname not in VOLATILE_COLUMNS]
        state[model._meta.label] = list(model._base_manager.order_by("pk").values_list(*columns))
    return state


def describe(response) -> str:
    return f"{response.status_code} {response.content[:300]!r}"


API_ROUTES = [route for route in organisation_routes() if route.is_api]
UI_ROUTES = [route for route in organisation_routes() if not route.is_api]
ALL_ORGANISATION_ROUTES = API_ROUTES + UI_ROUTES


# --- another organisation --------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ALL_ORGANISATION_ROUTES, ids=str)
def test_another_organisations_member_gets_404_and_changes_nothing(route, world, admin_b, token_b):
    url = build_url(route, world)
    callers = {"B's Super Administrator (session)": session_client(admin_b)}
    if route.is_api:
        callers["B's API token"] = token_client(token_b)
    before = database_state()
    failures = []
    for who, client in callers.items():
        for method in METHODS:
            response = request(client, method, url, api=route.is_api)
            allowed = {404} if route.is_api else {404, 405}
            if response.status_code not in allowed:
                failures.append(f"{method} {url} as {who}: expected 404, got {describe(response)}")
    assert not failures, "\n".join(failures)
    assert database_state() == before, f"{url}: another organisation's requests changed organisation A's data"


# --- a read-only member ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ALL_ORGANISATION_ROUTES, ids=str)
def test_a_read_only_member_cannot_write(route, world, reader_a, org_a):
    url = build_url(route, world)
    callers = {"A's read-only member (session)": session_client(reader_a)}
    if route.is_api:
        read_grants = {resource: level for resource, level in ALL_READ.items() if resource in TOKEN_RESOURCES}
        callers["A's read-only token"] = token_client(make_token(org_a, read_grants))
    before = database_state()
    failures = []
    for who, client in callers.items():
        for method in METHODS:
            response = request(client, method, url, api=route.is_api)
            if response.status_code >= 500:
                failures.append(f"{method} {url} as {who}: {describe(response)}")
            elif method in WRITE_METHODS and response.status_code not in (403, 405):
                failures.append(f"{method} {url} as {who}: expected 403 (or 405), got {describe(response)}")
    assert not failures, "\n".join(failures)
    assert database_state() == before, f"{url}: a read-only member's requests changed data"


# --- nobody signed in --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ALL_ORGANISATION_ROUTES, ids=str)
def test_anonymous_callers_are_refused(route, world):
    url = build_url(route, world)
    before = database_state()
    failures = []
    client = Client()
    for method in METHODS:
        response = request(client, method, url, api=route.is_api)
        if route.is_api:
            if response.status_code != 401:
                failures.append(f"{method} {url}: expected 401, got {describe(response)}")
        elif response.status_code != 302 or not response["Location"].startswith("/login/"):
            failures.append(f"{method} {url}: expected a redirect to /login/, got {describe(response)}")
    assert not failures, "\n".join(failures)
    assert database_state() == before
