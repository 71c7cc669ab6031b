"""The seed tutorial (docs/tutorial.md), steps 1–11, in Debian's Chromium against a real daphne, the real connector
and small origins on loopback, starting from what `make run` gives a new user: `manage.py bootstrap`'s banner (URL,
email, password), an organisation requiring 2FA. Everything a user does goes through the UI (the PIN is read in the
Outbox page, as a user of embedded mode reads it), except verifying the zone: no DNS here, so the operator vouches
for it with `manage.py verify_zone` (README "Commands"), run as the operator runs it, in its own process. The test
itself reads nothing from the database and writes nothing to it.

Needs Debian's Chromium (/usr/bin/chromium) and Playwright; runs on SQLite (TEST_DB_NAME) with the in-memory channel
layer, as `make run` does. A screenshot per step goes to test-results/screenshots/tutorial-XX-*.png
(UI_SCREENSHOT_DIR to change it), and the step times are printed (run with -s)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.browser.test_signin_2fa_token import CHROMIUM, CHROMIUM_ARGS, current_totp
from tests.certificates.test_origin_tls_e2e import self_signed
from tests.live_server import free_port, run_daphne, serve_in_thread
from tests.live_server import test_database_url as database_url_for_subprocesses
from tests.tutorial_walk import Timings, https_origin, page_handler, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("UI_SCREENSHOT_DIR", REPO / "test-results" / "screenshots"))
ZONE = "example.com"


def manage(public_url: str, *args: str) -> str:
    """`python manage.py …` as the operator runs it, against the test database; its output."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        "DATABASE_URL": database_url_for_subprocesses(),
        "DATA_DIR": str(settings.DATA_DIR),
        "PUBLIC_URL": public_url,
    }
    for name in ("BOOTSTRAP_TEAM", "BOOTSTRAP_ADMIN_EMAIL", "BOOTSTRAP_ADMIN_PASSWORD"):
        env.pop(name, None)
    return subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, check=True
    ).stdout


def bootstrap(public_url: str) -> dict[str, str]:
    """`manage.py bootstrap` as `make run` runs it; the banner's URL, email, password."""
    out = manage(public_url, "bootstrap")
    found = {key: re.search(rf"^\s+{key}:\s+(\S+)$", out, re.M) for key in ("URL", "Email", "Password")}
    assert all(found.values()), out
    return {key: match.group(1) for key, match in found.items() if match}


class Run:
    """The browser walk's shared state: the server, the admin's page, screenshots and timings."""

    def __init__(self, page, base: str, port: int) -> None:
        self.page, self.base, self.port = page, base, port
        self.timings = Timings()
        self.shot_index = 0
        self.steps_shot: set[int] = set()  # the steps (by position) that saved a screenshot
        self.notes: list[str] = []
        self.connectors: list[subprocess.Popen[bytes]] = []  # every one started, stopped at the end even on failure

    def shot(self, name: str, page=None) -> None:
        self.shot_index += 1
        path = SCREENSHOTS / f"tutorial-{self.shot_index:02d}-{name}.png"
        target = page or self.page
        target.evaluate("window.scrollTo(0, 0)")  # else the sticky header is drawn where the page was scrolled to
        target.screenshot(path=str(path), full_page=True)
        self.steps_shot.add(len(self.timings.steps))  # the step under way: those finished are counted

    def site(self, host: str, path: str = "/") -> str:
        return f"http://{host}:{self.port}{path}"


def test_the_tutorial_in_the_browser(tmp_path, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop in this thread; our ORM calls are sync
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's Chromium is not installed")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    port = free_port()
    banner = bootstrap(f"http://127.0.0.1:{port}")
    env = {"PUBLIC_URL": f"http://127.0.0.1:{port}", "EMAIL_URL": "", "REDIS_URL": ""}
    args = [*CHROMIUM_ARGS, "--host-resolver-rules=MAP *.example.com 127.0.0.1, MAP *.localhost 127.0.0.1"]
    with (
        run_daphne(env=env, port=port, log_dir=str(tmp_path)) as server,
        serve_in_thread(page_handler("Ghost blog")) as ghost_port,
        serve_in_thread(page_handler("Portainer")) as portainer_port,
        sync_api.sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
        page = context.new_page()
        page.set_default_timeout(20_000)
        run = Run(page, server.url, port)
        try:
            walk(run, banner, tmp_path, ghost_port, portainer_port, browser)
            unshot = [name for i, (name, _) in enumerate(run.timings.steps) if i not in run.steps_shot]
            assert not unshot, f"steps without a screenshot: {unshot}"
        except Exception:
            for open_page in context.pages:
                print(f"--- page at failure: {open_page.url} ---\n{open_page.inner_text('body')[:3000]}")
            raise
        finally:
            for connector in run.connectors:
                if connector.poll() is None:
                    connector.terminate()
                    connector.wait(15)
            print(run.timings.summary("the tutorial in the browser"))
            for note in run.notes:
                print("NOTE:", note)
            browser.close()
            log = tmp_path / "connector.log"
            if log.exists():
                print(f"--- connector log ---\n{log.read_text(errors='replace')[-3000:]}")


def start_from_install_box(run: Run, log_path: Path) -> subprocess.Popen[bytes]:
    """Run the command of the "From a checkout of this repository" tab, as shown, from this checkout."""
    command = run.page.inner_text("#cmd-text-checkout")
    argv = shlex.split(command)
    assert argv[:4] == ["python", "-m", "connector", "run"], argv
    log = open(log_path, "ab")  # noqa: SIM115
    try:
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, *argv[1:], "--ha-connections", "2", "--metrics", "127.0.0.1:0"],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        run.connectors.append(process)
        return process
    finally:
        log.close()


def save_hostname(page, *, subdomain: str | None = None, service_type: str, url: str, **tls: object) -> None:
    if subdomain is not None:
        page.fill("input[name=subdomain]", subdomain)
        page.select_option("select[name=zone]", label=ZONE)
    page.select_option("select[name=service_type]", service_type)
    page.fill("input[name=url]", url)
    if tls:
        page.click("details.settings-group > summary")
    if "no_tls_verify" in tls:
        page.set_checked("input[name=no_tls_verify]", bool(tls["no_tls_verify"]))
    if "origin_server_name" in tls:
        page.fill("input[name=origin_server_name]", str(tls["origin_server_name"]))
    page.click("button:has-text('Save hostname')")
    page.wait_for_url(re.compile(r".*/tunnels/[0-9a-f]{32}/(#.*)?$"))


def edit_hostname(page, host: str) -> None:
    page.click(f"tr:has(code:text-is('{host}')) a:has-text('Edit')")
    page.wait_for_selector("button:has-text('Save hostname')")


def visit(browser_page, url: str, status: int, text: str, timeout: float = 20.0) -> str:
    """Reload `url` until it answers `status` with `text` in the page (the connector picks a change up in ~1 s)."""

    def attempt() -> str:
        response = browser_page.goto(url)
        body = browser_page.content()
        return body if response is not None and response.status == status and text in body else ""

    return str(wait_until(f"{url} answering {status} with {text!r}", attempt, timeout=timeout, interval=0.5))


def walk(run: Run, banner: dict[str, str], tmp: Path, ghost_port: int, portainer_port: int, browser) -> None:  # noqa: PLR0915
    page, t = run.page, run.timings

    with t.step("1. sign in from make run's banner, enrol 2FA, choose the team name"):
        assert banner["URL"] == run.base + "/"
        page.goto(banner["URL"])
        page.fill("input[name=email]", banner["Email"])
        page.fill("input[name=password]", banner["Password"])
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r".*/account/two-factor/.*"))
        run.shot("enrol-2fa")
        secret = page.get_attribute("#totp-secret", "data-secret")
        page.fill("input[name=code]", current_totp(secret))
        page.click("form button[type=submit]:has-text('Turn on')")
        page.wait_for_url(re.compile(r".*/account/two-factor/backup-codes/.*"))
        page.click("text=I saved them, continue")
        page.wait_for_url(re.compile(r".*/o/[0-9a-f]+/$"))
        account = re.search(r"/o/([0-9a-f]+)/", page.url).group(1)
        org_url = f"{run.base}/o/{account}"
        page.click("nav >> text=Settings")
        page.fill("input[name=team_name]", "tutorial")
        page.check("input[name=confirm]")
        page.click("button:has-text('Rename team')")
        page.wait_for_selector("text=tutorial.access.localhost")
        page.click("nav >> text=Overview")
        assert page.inner_text("#team-domain") == "tutorial.access.localhost"
        run.shot("team-domain")

    with t.step("2. add the zone (the operator verifies it)"):
        page.click("nav >> text=Zones")
        page.fill("input[name=name]", ZONE)
        page.click("button:has-text('Add zone')")
        page.wait_for_selector("#txt-value")
        manage(run.base, "verify_zone", ZONE)
        run.notes.append("step 2: the zone was verified by the operator command (no DNS TXT record on loopback)")
        page.reload()
        assert "Active" in page.inner_text("h1")
        run.shot("zone-active")

    with t.step("3. create the tunnel, choose the environment, copy the command"):
        page.click("nav >> text=Tunnels")
        page.fill("input[name=name]", "test-tunnel")
        page.click("button:has-text('Create tunnel')")
        page.wait_for_selector("#install")
        page.click("#install [role=tab]:has-text('Debian / Ubuntu')")
        page.click("[data-copy-target='#cmd-text-debian']")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied == page.inner_text("#cmd-text-debian") and "service install" in copied, copied
        page.click("#install [role=tab]:has-text('From a checkout of this repository')")
        run.shot("install-command")
        tunnel_url = page.url.split("#")[0]

    with t.step("4. run the command; Connectors turn Connected by themselves"):
        connector = start_from_install_box(run, tmp / "connector.log")
        page.wait_for_selector("[data-tunnel-status] .badge[data-status=healthy]", timeout=30_000)
        row = page.locator("[data-tunnel-connectors] tr[data-connector]")
        text = row.inner_text()
        assert "Connected" in text and "127.0.0.1" in text, text
        run.shot("connected")

    with t.step("5. public hostname ghost → the blog, opened through the edge"):
        page.click("a:has-text('Add a public hostname')")
        save_hostname(page, subdomain="ghost", service_type="http", url=f"localhost:{ghost_port}")
        run.shot("hostname-ghost")
        blog = page.context.new_page()
        visit(blog, run.site(f"ghost.{ZONE}"), 200, "Ghost blog")
        run.shot("ghost-through-the-edge", blog)
        blog.close()

    with t.step("6. public hostname portainer → the tool (public)"):
        page.click("a:has-text('Add a public hostname')")
        save_hostname(page, subdomain="portainer", service_type="http", url=f"localhost:{portainer_port}")
        anyone = browser.new_context()
        visitor = anyone.new_page()
        visit(visitor, run.site(f"portainer.{ZONE}"), 200, "user: anonymous")
        anyone.close()
        run.shot("public-hostnames")

    with t.step("7. Access application + policy with the Access wizard"):
        app_url = protect_with_access(run)

    with t.step("8. open portainer: login page, PIN from the outbox, the tool; another email refused"):
        ana_context = browser.new_context()
        ana = ana_context.new_page()
        ana.set_default_timeout(20_000)
        ana.goto(run.site(f"portainer.{ZONE}", "/#!/home"))
        ana.wait_for_url(re.compile(r"http://tutorial\.access\.localhost:\d+/cdn-cgi/access/login/.*"))
        ana.fill("input[name=email]", "ana@corp.test")
        run.shot("access-login", ana)
        ana.click("button:has-text('Send me a code')")
        ana.wait_for_selector("input[name=code]")
        page.goto(f"{org_url}/outbox/")
        page.click("a:has-text('login code')")
        pin = re.search(r"\b(\d{6})\b", page.inner_text("main")).group(1)
        run.shot("outbox-pin")
        ana.fill("input[name=code]", pin)
        ana.click("button[type=submit]")
        ana.wait_for_url(re.compile(rf"http://portainer\.{re.escape(ZONE)}:\d+/.*"))
        assert "user: ana@corp.test" in ana.content()
        run.shot("portainer-signed-in", ana)
        bob_context = browser.new_context()
        bob = bob_context.new_page()
        bob.goto(run.site(f"portainer.{ZONE}"))
        bob.fill("input[name=email]", "bob@other.test")
        bob.click("button:has-text('Send me a code')")
        bob.wait_for_selector("input[name=code]")
        bob.fill("input[name=code]", "000000")
        bob.click("button[type=submit]")
        assert bob.url.startswith("http://tutorial.access.localhost") and "user: " not in bob.content()
        assert bob.locator("input[name=code]").count() == 1  # still asked for a code it never got
        run.shot("other-email-refused", bob)
        bob_context.close()

    with t.step('8b. the policy as "emails ending in" the domain: a colleague gets in, others still not'):
        page.goto(app_url)
        page.click("main a:has-text('Only me')")
        page.wait_for_selector("button:has-text('Save policy')")
        page.select_option("select[name=include_0_selector]", "email_domain")
        page.fill("textarea[name=include_0_values]", "corp.test")
        run.shot("access-policy-email-domain")
        page.click("button:has-text('Save policy')")
        page.wait_for_url(app_url)
        assert "corp.test" in page.inner_text("main")
        carol_context = browser.new_context()
        carol = carol_context.new_page()
        carol.set_default_timeout(20_000)
        sign_in_with_pin(run, carol, f"{org_url}/outbox/", "carol@corp.test")
        assert "user: carol@corp.test" in carol.content()
        carol_context.close()

    https_port = free_port()
    self_cert, self_key = self_signed(tmp, f"portainer.{ZONE}")
    with https_origin(https_port, self_cert, self_key, "Portainer (HTTPS)"):
        with t.step("9. HTTPS with a self-signed certificate: 502; No TLS verify: works; off again"):
            page.goto(tunnel_url)
            edit_hostname(page, f"portainer.{ZONE}")
            save_hostname(page, service_type="https", url=f"localhost:{https_port}")
            visit(ana, run.site(f"portainer.{ZONE}"), 502, "Bad gateway")
            run.shot("502-for-the-visitor", ana)

            # The tunnel's page, open since the save, lists the reason by itself (the edge records it within ~1 s).
            page.wait_for_selector("#origin-errors tr:has-text('No TLS verify')", timeout=15_000)
            assert page.url.split("#")[0] == tunnel_url
            run.shot("origin-errors")
            edit_hostname(page, f"portainer.{ZONE}")
            save_hostname(page, service_type="https", url=f"localhost:{https_port}", no_tls_verify=True)
            visit(ana, run.site(f"portainer.{ZONE}"), 200, "Portainer (HTTPS)")
            edit_hostname(page, f"portainer.{ZONE}")
            save_hostname(page, service_type="https", url=f"localhost:{https_port}", no_tls_verify=False)
            visit(ana, run.site(f"portainer.{ZONE}"), 502, "Bad gateway")

    with t.step("10. Origin CA certificate (RSA 2048, 15 years), installed, origin server name set"):
        page.click("nav >> text=Certificates")
        page.click("text=Create certificate")
        page.check("input[name=mode][value=generate]")
        page.fill("textarea[name=hostnames]", f"{ZONE}\nportainer.{ZONE}")
        page.check("input[name=key_type][value=origin-rsa]")
        assert page.input_value("select[name=validity]") == "5475"
        run.shot("certificate-form")
        page.click("button:has-text('Create')")
        page.click("button:has-text('Show the private key')")
        page.wait_for_selector("#private-key")
        (tmp / "origin.key").write_text(page.input_value("#private-key"))
        (tmp / "origin.pem").write_text(page.input_value("#certificate-pem"))
        run.shot("certificate-key-once")
    with https_origin(https_port, tmp / "origin.pem", tmp / "origin.key", "Portainer (Origin CA)"):
        with t.step("10b. origin restarted with it; origin server name, no TLS verify off: works"):
            page.goto(tunnel_url)
            edit_hostname(page, f"portainer.{ZONE}")
            save_hostname(
                page, service_type="https", url=f"localhost:{https_port}", origin_server_name=f"portainer.{ZONE}"
            )
            visit(ana, run.site(f"portainer.{ZONE}"), 200, "Portainer (Origin CA)")
            run.shot("verified-tls", ana)

        with t.step("11. connector stopped: Down, 530; started again: Connected, works"):
            page.goto(tunnel_url)
            connector.terminate()
            connector.wait(15)
            page.wait_for_selector("[data-tunnel-status] .badge[data-status=down]", timeout=20_000)
            run.shot("tunnel-down")
            visit(ana, run.site(f"portainer.{ZONE}"), 530, "1033")
            run.shot("530-no-connector", ana)
            connector = start_from_install_box(run, tmp / "connector.log")
            page.wait_for_selector("[data-tunnel-status] .badge[data-status=healthy]", timeout=30_000)
            visit(ana, run.site(f"portainer.{ZONE}"), 200, "Portainer (Origin CA)")
        ana_context.close()


def protect_with_access(run: Run) -> str:
    """Step 7 in the Access dashboard: a self-hosted application for portainer, 1 week, one-time PIN, a new policy
    allowing one email. Returns the application's page."""
    page = run.page
    page.click("nav.sidebar >> text=Access")
    page.wait_for_selector(".empty-state")
    page.click("main a.btn:has-text('Add an application')")
    page.wait_for_url(re.compile(r".*/access/apps/new/"))
    page.fill("input[name=name]", "Portainer")
    page.select_option("select[name=session_duration]", "168h")
    page.fill("input[name=dest_0_subdomain]", "portainer")
    page.select_option("select[name=dest_0_zone]", ZONE)
    page.check("text=One-time PIN")
    page.fill("input[name=policy_name]", "Only me")
    page.select_option("select[name=decision]", "allow")
    page.select_option("select[name=include_0_selector]", "email")
    page.fill("textarea[name=include_0_values]", "ana@corp.test")
    run.shot("access-wizard")
    page.click("button:has-text('Add application')")
    page.wait_for_url(re.compile(r".*/access/apps/[0-9a-f]{32}/$"))
    overview = page.inner_text("main")
    assert f"portainer.{ZONE}" in overview and "1 week" in overview and "One-time PIN" in overview, overview
    assert "ana@corp.test" in overview, overview
    run.shot("access-application")
    return page.url


def sign_in_with_pin(run: Run, visitor, outbox_url: str, email: str) -> None:
    """A visitor opens portainer, asks for a code, and gets it (the admin reads the mail in the Outbox page)."""
    visitor.goto(run.site(f"portainer.{ZONE}"))
    visitor.fill("input[name=email]", email)
    visitor.click("button:has-text('Send me a code')")
    visitor.wait_for_selector("input[name=code]")
    run.page.goto(outbox_url)
    run.page.click(f"tr:has-text('{email}') a:has-text('login code')")
    pin = re.search(r"\b(\d{6})\b", run.page.inner_text("main")).group(1)
    visitor.fill("input[name=code]", pin)
    visitor.click("button[type=submit]")
    visitor.wait_for_url(re.compile(rf"http://portainer\.{re.escape(ZONE)}:\d+/.*"))
