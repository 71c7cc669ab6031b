"""Creating an organisation, its overview and switcher, and its settings (including the team rename)."""

from __future__ import annotations

import re

from controlplane.choices import AuditAction, Role
from controlplane.models import AuditEvent, Membership, Organisation
from tests.controlplane.ui.conftest import sign_in
from tests.factories import MembershipFactory, UserFactory


def test_any_signed_in_user_creates_an_organisation_and_becomes_super_administrator(client, db):
    user = UserFactory(email="founder@example.org")
    sign_in(client, user)
    page = client.get("/organisations/new/").content.decode()
    assert "access.localhost" in page
    response = client.post(
        "/organisations/new/", {"display_name": "Founders Inc", "team_name": "founders", "require_2fa": ""}
    )
    organisation = Organisation.objects.get(team_name="founders")
    assert response.url == f"/o/{organisation.account_id}/"
    assert organisation.display_name == "Founders Inc" and organisation.require_2fa is False
    assert Membership.objects.for_org(organisation).get(user=user).role == Role.SUPER_ADMIN
    assert AuditEvent.objects.for_org(organisation).filter(action=AuditAction.CREATE).count() == 2


def test_creating_a_2fa_organisation_sends_the_founder_to_enrol(client, db):
    sign_in(client, UserFactory(email="careful@example.org"))
    response = client.post(
        "/organisations/new/", {"display_name": "Careful", "team_name": "careful", "require_2fa": "on"}, follow=True
    )
    assert response.redirect_chain[-1][0].startswith("/account/two-factor/")


def test_create_errors_are_inline(admin_client, org_a):
    for team_name, message in [
        ("alpha", "already exists"),
        ("Bad Name", "Team names are lower case."),
        ("admin", "is reserved"),
        ("-x-", "not starting or ending with a hyphen"),
    ]:
        response = admin_client.post("/organisations/new/", {"display_name": "X", "team_name": team_name})
        assert response.status_code == 200 and message in response.content.decode(), team_name


def test_overview_shows_team_domain_counts_and_the_switcher(admin_client, org_a, org_b, admin_a):
    MembershipFactory(organisation=org_b, user=admin_a, role=Role.READ_ONLY)
    html = admin_client.get(f"/o/{org_a.account_id}/").content.decode()
    assert "alpha.access.localhost" in html and "Super Administrator" in html
    assert f'href="/o/{org_b.account_id}/"' in html and "Bravo" in html  # the switcher
    for link in ["tunnels", "access", "certificates", "zones", "members", "tokens", "audit", "settings"]:
        assert f'href="/o/{org_a.account_id}/{link}/"' in html


def test_coming_soon_sections_say_what_is_coming(reader_client, org_a):
    for section, text in [("access", "one-time PIN"), ("certificates", "Origin CA")]:
        html = reader_client.get(f"/o/{org_a.account_id}/{section}/").content.decode()
        assert text in html and "developers.cloudflare.com" in html


def test_settings_update_name_and_2fa(admin_client, org_a):
    response = admin_client.post(
        f"/o/{org_a.account_id}/settings/", {"form": "settings", "display_name": "Alpha Ltd", "require_2fa": "on"}
    )
    assert response.url == f"/o/{org_a.account_id}/settings/"
    org_a.refresh_from_db()
    assert org_a.display_name == "Alpha Ltd" and org_a.require_2fa is True
    event = AuditEvent.objects.for_org(org_a).get(action=AuditAction.UPDATE, resource_type="organisation")
    assert event.changes["require_2fa"] == [False, True]


def test_settings_errors_are_inline(admin_client, org_a):
    response = admin_client.post(f"/o/{org_a.account_id}/settings/", {"form": "settings", "display_name": ""})
    assert response.status_code == 200 and "This field is required." in response.content.decode()


def test_rename_warns_needs_confirmation_and_changes_the_team_domain(admin_client, org_a, org_b):
    url = f"/o/{org_a.account_id}/settings/"
    page = admin_client.get(url).content.decode()
    assert "Renaming the team changes the team domain" in page and "alpha.access.localhost" in page
    unconfirmed = admin_client.post(url, {"form": "rename", "team_name": "alpha2"})
    assert "Tick the box" in unconfirmed.content.decode()
    taken = admin_client.post(url, {"form": "rename", "team_name": "bravo", "confirm": "on"})
    assert "already taken" in taken.content.decode()
    same = admin_client.post(url, {"form": "rename", "team_name": "alpha", "confirm": "on"})
    assert "already the team name" in same.content.decode()
    done = admin_client.post(url, {"form": "rename", "team_name": "alpha2", "confirm": "on"}, follow=True)
    assert "alpha2.access.localhost (was alpha.access.localhost)" in done.content.decode()
    org_a.refresh_from_db()
    assert org_a.team_name == "alpha2"


def test_only_super_administrators_rename_the_team(client, org_a):
    admin = MembershipFactory(organisation=org_a, user=UserFactory(email="adm@alpha.test"), role=Role.ADMIN).user
    sign_in(client, admin)
    url = f"/o/{org_a.account_id}/settings/"
    assert "Only a Super Administrator can rename the team." in client.get(url).content.decode()
    response = client.post(url, {"form": "rename", "team_name": "hijack", "confirm": "on"})
    assert response.status_code == 200 and "Only a Super Administrator" in response.content.decode()
    org_a.refresh_from_db()
    assert org_a.team_name == "alpha"


def test_read_only_members_see_settings_disabled(reader_client, org_a):
    html = reader_client.get(f"/o/{org_a.account_id}/settings/").content.decode()
    assert "can see these settings but not change them" in html and "<fieldset disabled>" in html


def test_sections_not_built_yet_say_so_wherever_they_appear(admin_client, org_a):
    base = f"/o/{org_a.account_id}"
    html = admin_client.get(f"{base}/access/").content.decode()
    assert "Not available yet" in html and "being built" not in html
    overview = admin_client.get(f"{base}/").content.decode()
    nav = overview.split('<nav class="sidebar"', 1)[1].split("</nav>", 1)[0]
    assert re.search(r">Access <span class=\"nav-note\">not available yet</span></a>", nav)
    assert re.search(r">Tunnels</a>", nav)  # built sections carry no note
    assert re.search(r">Certificates</a>", nav)
    matrix = admin_client.get(f"{base}/tokens/new/").content.decode()
    assert 'Access <span class="muted small">(not available yet)</span>' in matrix
    assert "Origin certificates <span" not in matrix and "Tunnels <span" not in matrix
    members = admin_client.get(f"{base}/members/").content.decode()
    assert "(Access and Origin certificates: not available yet.)" not in members
