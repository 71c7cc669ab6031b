"""An organisation (team “alpha”) with a verified zone and the tutorial's application: portainer.example.com, a
policy allowing one email, a one-week session."""

from __future__ import annotations

import asyncio
import re

import pytest

from access.services.applications import application_save
from access.services.policies import policy_save
from controlplane.actors import Actor
from controlplane.models import OutboxMessage
from controlplane.services.zones import zone_create, zone_mark_verified

TEAM_HOST = "alpha.access.localhost"


@pytest.fixture(autouse=True)
def outbox_mail(settings):
    """Mail kept in the outbox, as embedded mode does (the test runner's default is Django's in-memory backend)."""
    settings.EMAIL_BACKEND = "controlplane.mail.OutboxEmailBackend"
    settings.EMAIL_OUTBOX_MODE = True


@pytest.fixture
def portainer(org_a):
    zone_mark_verified(zone=zone_create(organisation=org_a, name="example.com", actor=Actor.cli()), actor=Actor.cli())
    policy = policy_save(
        organisation=org_a,
        actor=Actor.cli(),
        data={"name": "Me", "decision": "allow", "include": [{"email": {"email": "ana@example.com"}}]},
    )
    return application_save(
        organisation=org_a,
        actor=Actor.cli(),
        data={
            "name": "Portainer",
            "domain": "portainer.example.com",
            "session_duration": "168h",
            "policies": [str(policy.pk)],
        },
    )


def require_network(app, email: str = "ana@example.com", network: str = "203.0.113.0/24") -> None:
    """Make the application's policy read a request fact: `email` admitted only from `network`."""
    policy_save(
        organisation=app.organisation,
        actor=Actor.cli(),
        policy=app.policy_links.get().policy,
        data={
            "name": "Me",
            "decision": "allow",
            "include": [{"email": {"email": email}}],
            "require": [{"ip": {"ip": network}}],
        },
    )


def pins_for(organisation, email: str) -> list[str]:
    messages = OutboxMessage.objects.for_org(organisation).order_by("created_at")
    return [re.search(r"\b(\d{6})\b", m.body).group(1) for m in messages if email in m.to and "login code" in m.subject]


@pytest.fixture
def client_api(token_a, org_a):
    from django.test import Client

    client = Client(headers={"Authorization": f"Bearer {token_a}"})
    base = f"/client/v4/accounts/{org_a.account_id}"

    def call(method: str, path: str, body=None):
        response = getattr(client, method)(base + path, body, content_type="application/json")
        return response.status_code, response.json()

    return call


class DatabaseThread:
    """What Gate.admit needs of the hub when it awaits: `db` runs a function off the event loop, as the hub's database
    threads do (a denial written to the access log)."""

    async def db(self, function, *args):
        return await asyncio.to_thread(function, *args)
