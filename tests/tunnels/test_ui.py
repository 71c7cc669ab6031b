"""The tunnel pages: create, install commands, public hostnames with Cloudflare's form, rotate, delete, and
notification destinations; read-only members see but cannot change, other organisations get 404."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from controlplane.actors import Actor
from controlplane.models import DnsRecord
from controlplane.services.zones import zone_create, zone_mark_verified
from tests.controlplane.ui.conftest import sign_in
from tunnels.models import NotificationDestination, Tunnel
from tunnels.services import tunnel_create


@pytest.fixture
def zone(org_a):
    return zone_mark_verified(
        zone=zone_create(organisation=org_a, name="example.com", actor=Actor.cli()), actor=Actor.cli()
    )


def url(name, org, *args):
    return reverse(f"ui:{name}", args=[org.account_id, *args])


def test_create_a_tunnel_and_see_its_install_commands(client, admin_a, org_a):
    sign_in(client, admin_a)
    response = client.post(url("tunnels", org_a), {"name": "home-lab"}, follow=True)
    assert response.status_code == 200
    tunnel = Tunnel.objects.for_org(org_a).get()
    page = response.content.decode()
    assert "home-lab" in page and "Install and run a connector" in page
    assert "/connector/download/zt_connector-" in page and "service install" in page
    assert "Debian / Ubuntu" in page and "Docker" in page and "macOS" in page and "RHEL" in page
    assert str(tunnel.id) in page


def test_invalid_tunnel_names_show_a_form_error(client, admin_a, org_a):
    sign_in(client, admin_a)
    tunnel_create(organisation=org_a, name="taken", actor=Actor.cli())
    response = client.post(url("tunnels", org_a), {"name": "taken"})
    assert response.status_code == 200 and "already exists" in response.content.decode()
    response = client.post(url("tunnels", org_a), {"name": "0a1b2c3d-0000-4000-8000-000000000000"})
    assert "cannot be a UUID" in response.content.decode()


def test_a_field_error_is_read_with_its_field(client, admin_a, org_a):
    """A screen reader announces the error when the field takes focus: the input names the one element holding its
    errors in aria-describedby and is marked invalid."""
    sign_in(client, admin_a)
    tunnel_create(organisation=org_a, name="taken", actor=Actor.cli())
    page = client.post(url("tunnels", org_a), {"name": "taken"}).content.decode()
    field = re.search(r"<input[^>]*\bname=\"name\"[^>]*>", page)
    assert field, page
    assert 'aria-invalid="true"' in field.group(0)
    described = re.search(r'aria-describedby="([^"]+)"', field.group(0))
    assert described and "id_name_error" in described.group(1).split()
    assert page.count('id="id_name_error"') == 1
    errors = re.search(r'<div id="id_name_error">(.*?)</div>', page, re.S)
    assert errors and "already exists" in errors.group(1)


def test_add_edit_and_delete_a_public_hostname(client, admin_a, org_a, zone):
    sign_in(client, admin_a)
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    add = url("tunnel-hostname-add", org_a, tunnel.id.hex)
    page = client.get(add).content.decode()
    assert "Additional application settings" in page and "example.com" in page
    response = client.post(
        add,
        {
            "subdomain": "ghost",
            "zone": "example.com",
            "path": "",
            "service_type": "https",
            "url": "localhost:9443",
            "origin_server_name": "ghost.internal",
            "connect_timeout": "15",
        },
    )
    assert response.status_code == 302
    tunnel.refresh_from_db()
    assert tunnel.config["ingress"][0] == {
        "hostname": "ghost.example.com",
        "service": "https://localhost:9443",
        "originRequest": {"originServerName": "ghost.internal", "connectTimeout": 15},
    }
    assert tunnel.config["ingress"][-1] == {"service": "http_status:404"}
    assert DnsRecord.objects.for_org(org_a).get().name == "ghost.example.com"
    edit = url("tunnel-hostname-edit", org_a, tunnel.id.hex, 0)
    page = client.get(edit).content.decode()
    assert 'value="ghost"' in page and 'value="ghost.internal"' in page
    client.post(
        edit,
        {
            "subdomain": "ghost",
            "zone": "example.com",
            "service_type": "http",
            "url": "localhost:3001",
            "no_tls_verify": "on",
        },
    )
    tunnel.refresh_from_db()
    assert tunnel.config["ingress"][0]["service"] == "http://localhost:3001"
    assert tunnel.config["ingress"][0]["originRequest"] == {"noTLSVerify": True}
    client.post(url("tunnel-hostname-delete", org_a, tunnel.id.hex, 0))
    tunnel.refresh_from_db()
    assert tunnel.config["ingress"] == [{"service": "http_status:404"}]
    assert not DnsRecord.objects.for_org(org_a).exists()


def test_hostname_errors_are_shown_on_the_form(client, admin_a, org_a, zone):
    sign_in(client, admin_a)
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    add = url("tunnel-hostname-add", org_a, tunnel.id.hex)
    response = client.post(add, {"subdomain": "app", "zone": "example.com", "service_type": "http", "url": ""})
    assert "needs a URL" in response.content.decode()
    response = client.post(
        add, {"subdomain": "app", "zone": "example.com", "path": "(", "service_type": "http", "url": "localhost:1"}
    )
    assert "invalid regex" in response.content.decode()
    response = client.post(add, {"subdomain": "app", "zone": "other.org", "service_type": "http", "url": "x:1"})
    assert "Select a valid choice" in response.content.decode()
    assert client.get(url("tunnel-hostname-edit", org_a, tunnel.id.hex, 7)).status_code == 404


def test_rotate_and_delete(client, admin_a, org_a):
    sign_in(client, admin_a)
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    before = Tunnel.objects.for_org(org_a).get().secret_ciphertext
    response = client.post(url("tunnel-rotate", org_a, tunnel.id.hex), {"disconnect": "on"}, follow=True)
    assert "Token rotated" in response.content.decode()
    assert Tunnel.objects.for_org(org_a).get().secret_ciphertext != before
    response = client.post(url("tunnel-delete", org_a, tunnel.id.hex), follow=True)
    assert "deleted" in response.content.decode()
    assert Tunnel.objects.for_org(org_a).get().deleted_at is not None


def test_read_only_members_see_no_token_and_cannot_change_anything(client, reader_a, org_a):
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    sign_in(client, reader_a)
    page = client.get(url("tunnel", org_a, tunnel.id.hex)).content.decode()
    assert "lab" in page and "Install and run a connector</h2>" not in page and "eyJhIjoi" not in page
    assert client.post(url("tunnels", org_a), {"name": "x"}).status_code == 403
    assert client.post(url("tunnel-rotate", org_a, tunnel.id.hex)).status_code == 403
    assert client.get(url("connectors", org_a)).status_code == 200


def test_other_organisations_get_404(client, admin_b, org_a):
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    sign_in(client, admin_b)
    assert client.get(url("tunnel", org_a, tunnel.id.hex)).status_code == 404
    assert (
        client.get(
            reverse(
                "ui:tunnel",
                args=[
                    admin_b.memberships.unscoped("test: admin_b has one membership").get().organisation.account_id,
                    tunnel.id.hex,
                ],
            )
        ).status_code
        == 404
    )


def test_notification_destinations(client, admin_a, org_a):
    sign_in(client, admin_a)
    page = url("tunnel-notifications", org_a)
    response = client.post(
        page,
        {"name": "ops", "kind": "webhook", "url": "https://hooks.example.org/zt", "secret": "short", "health": "on"},
    )
    assert "16 characters" in response.content.decode()
    client.post(
        page,
        {
            "name": "ops",
            "kind": "webhook",
            "url": "https://hooks.example.org/zt",
            "secret": "a-long-signing-secret",
            "health": "on",
        },
    )
    destination = NotificationDestination.objects.for_org(org_a).get()
    assert destination.alert_types == ["tunnel_health_event"]
    client.post(url("tunnel-notification-delete", org_a, destination.id.hex))
    assert not NotificationDestination.objects.for_org(org_a).exists()


@pytest.fixture
def verified_admin(client, admin_a, org_a):
    """The product's default: the organisation requires 2FA and the admin's session has passed it."""
    from tests.controlplane.ui.conftest import add_second_factor

    org_a.require_2fa = True
    org_a.save(update_fields=["require_2fa"])
    return sign_in(client, admin_a, device=add_second_factor(admin_a))


def test_the_same_hostname_twice_is_refused_on_the_form_naming_the_rule(verified_admin, org_a, zone):
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    add = url("tunnel-hostname-add", org_a, tunnel.id.hex)
    form = {"subdomain": "app", "zone": "example.com", "service_type": "http", "url": "localhost:1"}
    assert verified_admin.post(add, form).status_code == 302
    response = verified_admin.post(add, {**form, "url": "localhost:2"})
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert "app.example.com is already rule #1 of this tunnel (to http://localhost:1)" in errors["subdomain"][0]
    assert "already rule #1" in response.content.decode()
    # Another path of the same hostname is a rule of its own.
    assert verified_admin.post(add, {**form, "path": "^/api", "url": "localhost:2"}).status_code == 302
    tunnel.refresh_from_db()
    assert [(r.get("hostname"), r.get("path")) for r in tunnel.config["ingress"]] == [
        ("app.example.com", None),
        ("app.example.com", "^/api"),
        (None, None),
    ]


def test_the_hostname_list_shows_settings_in_words_and_errors_use_the_forms_labels(verified_admin, org_a, zone):
    from tunnels.services import tunnel_config_update

    tunnel = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    rule = {
        "hostname": "app.example.com",
        "service": "https://localhost:9443",
        "originRequest": {"noTLSVerify": True, "originServerName": "app.internal", "connectTimeout": "5s"},
    }
    tunnel_config_update(tunnel=tunnel, config={"ingress": [rule, {"service": "http_status:404"}]}, actor=Actor.cli())
    page = verified_admin.get(url("tunnel", org_a, tunnel.id.hex)).content.decode()
    settings = page.split("data-hostname-settings>", 1)[1].split("</td>", 1)[0]
    assert "<div>No TLS verify</div>" in settings
    assert "<div>Origin server name: app.internal</div>" in settings
    assert "<div>Connect timeout: 5 s</div>" in settings
    assert "noTLSVerify" not in page and "True" not in settings and "originServerName" not in page

    response = verified_admin.post(
        url("tunnel-hostname-add", org_a, tunnel.id.hex),
        {
            "subdomain": "b",
            "zone": "example.com",
            "service_type": "https",
            "url": "localhost:1",
            "origin_server_name": "bad\x01name",
        },
    )
    errors = response.context["form"].errors
    assert errors["origin_server_name"] == ["“Origin server name” cannot contain control characters"]
    assert "originServerName" not in response.content.decode()


def test_setting_words_cover_every_setting_the_api_accepts():
    from connector.ingress import ORIGIN_REQUEST_KEYS
    from tunnels.forms import SETTING_LABELS, in_ui_words, setting_words

    assert set(ORIGIN_REQUEST_KEYS) <= set(SETTING_LABELS)
    assert setting_words({"http2Origin": True, "noHappyEyeballs": False, "keepAliveTimeout": 300}) == [
        "HTTP2 connection",
        "No happy eyeballs: off",
        "Idle connection expiration: 5 min",
    ]
    assert setting_words({"access": {"required": True, "teamName": "acme"}}) == [
        "Access token check: required (team acme)"
    ]
    assert (
        in_ui_words("keepAliveConnections must be a whole number") == "“Keep-alive connections” must be a whole number"
    )


def test_a_rename_refused_shows_the_tunnel_page_with_the_error(client, admin_a, org_a):
    # The rename form posts to its own URL; a refused name renders the whole tunnel page again (it was a 500: the
    # page's context was missing; found by tests/browser/test_accessibility.py sending each form empty).
    sign_in(client, admin_a)
    tunnel = tunnel_create(organisation=org_a, name="home-lab", actor=Actor.cli())
    response = client.post(url("tunnel-rename", org_a, tunnel.id.hex), {"name": ""})
    assert response.status_code == 200
    page = response.content.decode()
    assert "Install and run a connector" in page and 'class="error"' in page
    assert Tunnel.objects.for_org(org_a).get().name == "home-lab"


def test_the_tunnel_list_is_paged_newest_first_at_a_constant_cost(client, admin_a, org_a):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tunnels.views import TUNNELS_PER_PAGE

    sign_in(client, admin_a)
    for index in range(TUNNELS_PER_PAGE + 5):
        tunnel_create(organisation=org_a, name=f"t-{index:03d}", actor=Actor.cli())
    client.get(url("tunnels", org_a))  # warm up per-process caches
    with CaptureQueriesContext(connection) as first_count:
        first = client.get(url("tunnels", org_a)).content.decode()
    assert first.count("data-tunnel-row=") == TUNNELS_PER_PAGE
    assert f"t-{TUNNELS_PER_PAGE + 4:03d}" in first and "t-000" not in first  # newest first
    assert f"Page 1 of 2 · {TUNNELS_PER_PAGE + 5} in all" in first and "?page=2" in first
    second = client.get(url("tunnels", org_a) + "?page=2").content.decode()
    assert second.count("data-tunnel-row=") == 5 and "t-000" in second
    assert client.get(url("tunnels", org_a) + "?page=nonsense").status_code == 200  # the first page, not an error
    for index in range(TUNNELS_PER_PAGE):
        tunnel_create(organisation=org_a, name=f"u-{index:03d}", actor=Actor.cli())
    with CaptureQueriesContext(connection) as more_count:
        client.get(url("tunnels", org_a))
    assert len(more_count) == len(first_count), "the page's queries grow with the number of tunnels"


def test_the_tunnel_list_rows_and_queries(client, admin_a, org_a, zone):
    """Each row as the page showed it when it was drawn with a `{% url %}` and a `|date` per row, and the page's
    queries pinned (issue 13: bench/api's UI page): the session, its user and second-factor device, the membership,
    the page's count, rows, live connections and routes, the organisation switcher; no session write."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.controlplane.ui.conftest import add_second_factor
    from tunnels.services import public_hostname_save

    sign_in(client, admin_a, device=add_second_factor(admin_a))
    routed = tunnel_create(organisation=org_a, name="web <&>", actor=Actor.cli())
    for sub in ("b", "a"):
        rule = {"hostname": f"{sub}.example.com", "service": "http://x:1"}
        public_hostname_save(tunnel=routed, actor=Actor.cli(), rule=rule)
    bare = tunnel_create(organisation=org_a, name="bare", actor=Actor.cli())
    client.get(url("tunnels", org_a))  # the session's first page of the organisation records it as the last one
    with CaptureQueriesContext(connection) as queries:
        page = client.get(url("tunnels", org_a)).content.decode()
    sql = [q["sql"] for q in queries.captured_queries]
    assert len(sql) == 9, sql
    assert not any("django_session" in q and not q.startswith("SELECT") for q in sql), sql
    rows = re.findall(r"<tr data-tunnel-row=.*?</tr>", page, re.S)
    assert len(rows) == 2 and f'data-tunnel-row="{bare.id}"' in rows[0]  # newest first
    day = routed.created_at.strftime("%-d %b %Y")
    # Compared word by word: a line break below stands for a space in the page.
    assert " ".join(rows[1].split()) == " ".join(
        f"""<tr data-tunnel-row="{routed.id}">
        <td><a class="strong" href="{url("tunnel", org_a, routed.id.hex)}">web &lt;&amp;&gt;</a><div
          class="muted small mono">{routed.id}</div></td>
        <td><span data-tunnel-status="{routed.id}"></span><div class="muted small"
          data-tunnel-explanation="{routed.id}"></div></td>
        <td data-tunnel-connector-count="{routed.id}"></td>
        <td><div><code>a.example.com</code></div><div><code>b.example.com</code></div></td>
        <td class="nowrap">{day}</td>
      </tr>""".split()
    )
    assert '<td><span class="muted">none</span></td>' in rows[0]


def test_the_new_create_form_field_is_the_one_the_template_draws(db):
    """The list's create form, when new, shows its name field as rendered once per process (tunnels/views.py):
    the markup ui/includes/field.html draws for a new form."""
    from django.template import engines
    from django.utils.translation import get_language

    from tunnels.forms import TunnelCreateForm
    from tunnels.views import _empty_name_field

    template = engines["django"].from_string('{% include "ui/includes/field.html" with field=form.name %}')
    assert _empty_name_field(get_language()) == template.render({"form": TunnelCreateForm()})
    assert 'name="name"' in _empty_name_field(get_language())
