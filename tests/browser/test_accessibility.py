"""Every page of the team admin UI, in a real browser, at a laptop's 1280 px and a phone's 390 px: usable on a small
screen, with a keyboard and with a screen reader. The pages are enumerated from the URL conf (the same walk as the
isolation matrix, tests/controlplane/test_isolation.py), so a new page is checked without anyone remembering to:
an organisation's page is filled from that test's REGISTRY and fetched; one that answers 405 to a GET is an action
(a POST endpoint), any other is a page and is checked. A route outside an organisation must be classified below.

On every page, at both widths:
* the page never scrolls sideways (a wide table scrolls inside its own container, tests/browser/test_tables_fit.py);
* every form control has an accessible name (a label, aria-label or aria-labelledby), every link and button has
  one, every image has an alt, there is exactly one h1 and one main landmark;
* keyboard: if anything focusable comes before main (the top bar, the sidebar), the first Tab lands on a skip link
  and Enter on it moves focus to main; every element Tab reaches shows a visible focus indicator (an outline or a
  box-shadow it does not have unfocused); the page's primary action (its first primary button, else its first
  submit button) is reached by Tab.
Then, on a fresh organisation, every list page shows an empty state with a link or button to the next step, and
each page's main POST form submitted empty answers in words (no raw field names, no Python reprs, no 500).
The signed-in user has two-factor authentication, as the product requires by default. A screenshot of every page
at 390 px goes to test-results/screenshots/a11y/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.urls import resolve, reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from controlplane.actors import Actor
from controlplane.choices import Role
from controlplane.services.members import invitation_create
from controlplane.services.zones import zone_mark_verified
from edge.pages import TITLES, error_body
from tests.browser.test_signin_2fa_token import CHROMIUM, CHROMIUM_ARGS
from tests.controlplane.test_isolation import REGISTRY, World, all_routes, build_url
from tests.controlplane.ui.conftest import add_second_factor, totp_code
from tests.factories import DEFAULT_PASSWORD, MembershipFactory, OrganisationFactory, UserFactory
from tests.live_server import daphne_server  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-results" / "screenshots" / "a11y"
WIDTHS = (1280, 390)
TAB_LIMIT = 80  # Tab presses after the skip link before the primary action counts as unreachable

# Routes outside an organisation: how each is checked, or why it is not a page of the admin UI.
ANONYMOUS = "anonymous"  # checked signed out
SIGNED_IN = "signed in"  # checked signed in
OUTSIDE_ORGANISATION: dict[str, str] = {
    "login/": ANONYMOUS,
    "login/verify/": "checked while signing in (it exists only between the password and the second factor)",
    "password-reset/": ANONYMOUS,
    "password-reset/sent/": ANONYMOUS,
    "reset/<uidb64>/<token>/": ANONYMOUS,
    "reset/done/": ANONYMOUS,
    "invitations/<str:secret>/": ANONYMOUS,
    "": "redirects to the user's organisation (checked there) or to sign-in",
    "logout/": "an action (POST)",
    "account/": SIGNED_IN,
    "account/password/": SIGNED_IN,
    "account/two-factor/": SIGNED_IN,
    "account/two-factor/backup-codes/": SIGNED_IN,
    "account/two-factor/remove/": SIGNED_IN,
    "organisations/new/": SIGNED_IN,
    "cdn-cgi/access/login/<str:app_host>": "checked on the team domain (test_access_login_and_error_pages)",
    "cdn-cgi/access/certs": "JSON (the team's public keys)",
    "cdn-cgi/access/get-identity": "JSON (the visitor's identity)",
    "cdn-cgi/access/logout": "ends the visitor's session and redirects",
    "docs/api/": "the API reference rendered from the OpenAPI schema: for programmers, not a page of the admin UI",
    "healthz": "a probe (plain text)",
    "readyz": "a probe (plain text)",
    "connector/download/<str:filename>": "a file download",
    "origin-ca/roots.pem": "a file download",
    ".well-known/origin-ca.pem": "a file download",
    "origin-ca/crl/<str:root_file>": "a file download",
}

# Pages of an organisation that list things: on a fresh organisation each shows an empty state with a next step.
# Every other organisation page without an object in its URL is listed in NOT_LISTS with the reason.
LISTS = {
    "ui:zones",
    "ui:tokens",
    "ui:tunnels",
    "ui:tunnel-notifications",
    "ui:connectors",
    "ui:access",
    "ui:access-policies",
    "ui:access-groups",
    "ui:access-lists",
    "ui:access-service-tokens",
    "ui:access-logs",
    "ui:certificates",
    "ui:outbox",
}
NOT_LISTS = {
    "ui:overview": "a dashboard; its get-started card is the next step (tests/browser/test_tables_fit.py)",
    "ui:settings": "a form",
    "ui:members": "never empty: the viewer is a member",
    "ui:audit": "never empty: signing in is its first entry (its filtered empty state links to clearing the filters)",
    "ui:token-create": "a form",
    "ui:access-app-create": "a form (the wizard)",
    "ui:access-policy-create": "a form",
    "ui:access-group-create": "a form",
    "ui:access-list-create": "a form",
    "ui:access-tester": "a form",
    "ui:access-settings": "a form",
}

PAGE_CHECKS = """
() => {
  const problems = [];
  const root = document.documentElement;
  if (root.scrollWidth > root.clientWidth + 1) {
    // What sticks out: elements past the right edge that no scrolling or clipping container holds.
    const clipped = (el) => {
      // An absolutely positioned element escapes every scroller between it and its containing block.
      let up = getComputedStyle(el).position === "absolute" ? el.offsetParent : el.parentElement;
      for (; up && up !== document.body; up = up.parentElement) {
        if (getComputedStyle(up).overflowX !== "visible") return true;
      }
      return false;
    };
    const culprits = Array.from(document.body.querySelectorAll("*"))
      .filter((el) => el.getBoundingClientRect().right > root.clientWidth + 1 && !clipped(el))
      .sort((a, b) => b.getBoundingClientRect().right - a.getBoundingClientRect().right).slice(0, 3)
      .map((el) => `${el.outerHTML.replace(/\\s+/g, " ").slice(0, 100)} (to ${el.getBoundingClientRect().right}px)`);
    problems.push(`the page scrolls sideways: ${root.scrollWidth}px in ${root.clientWidth}px: ${culprits.join(" | ")}`);
  }
  const text = (el) => (el.textContent || "").replace(/\\s+/g, " ").trim();
  const show = (el) => el.outerHTML.replace(/\\s+/g, " ").slice(0, 140);
  const labelled = (el) => {
    const ids = el.getAttribute("aria-labelledby");
    if (ids) {
      const words = ids.split(/\\s+/).map((id) => document.getElementById(id)).filter(Boolean).map(text).join(" ");
      if (words.trim()) return words.trim();
    }
    return (el.getAttribute("aria-label") || "").trim();
  };
  for (const el of document.querySelectorAll("input, select, textarea")) {
    if (el.type === "hidden") continue;
    let name = labelled(el);
    if (!name && el.labels) name = Array.from(el.labels).map(text).join(" ").trim();
    if (!name && ["submit", "button", "reset"].includes(el.type)) name = (el.value || "").trim();
    if (!name) problems.push(`a form control without a label: ${show(el)}`);
  }
  for (const el of document.querySelectorAll("a[href], button, summary, [role=button]")) {
    let name = labelled(el) || text(el);
    if (!name) name = Array.from(el.querySelectorAll("img[alt]")).map((img) => img.alt.trim()).join(" ").trim();
    if (!name) problems.push(`a ${el.tagName.toLowerCase()} without an accessible name: ${show(el)}`);
  }
  for (const img of document.querySelectorAll("img:not([alt])")) problems.push(`an image without alt: ${show(img)}`);
  const h1 = document.querySelectorAll("h1").length;
  if (h1 !== 1) problems.push(`${h1} h1 elements (one per page)`);
  const mains = document.querySelectorAll("main, [role=main]").length;
  if (mains !== 1) problems.push(`${mains} main landmarks (one per page)`);
  return problems;
}
"""

# Marks the page's primary action (the first visible primary button in main, else its first visible submit
# button, else its first visible button-styled link) with data-a11y-primary; returns its text or null.
MARK_PRIMARY = """
() => {
  const main = document.querySelector("main");
  if (!main) return null;
  const seen = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== "hidden";
  for (const selector of [".btn-primary:not([disabled])", "button[type=submit]:not([disabled])", "a.btn"]) {
    const el = Array.from(main.querySelectorAll(selector)).find(seen);
    if (el) { el.setAttribute("data-a11y-primary", ""); return el.textContent.replace(/\\s+/g, " ").trim(); }
  }
  return null;
}
"""

# The focused element: where it is, and whether its focus can be seen (compared with an unfocused copy of it).
FOCUSED = """
() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const main = document.querySelector("main");
  const copy = el.cloneNode(false);
  copy.removeAttribute("id");
  copy.style.position = "absolute";
  copy.style.visibility = "hidden";
  el.parentNode.insertBefore(copy, el.nextSibling);
  const focused = getComputedStyle(el), rest = getComputedStyle(copy);
  const outline = focused.outlineStyle !== "none" && parseFloat(focused.outlineWidth) > 0
    && (focused.outlineStyle !== rest.outlineStyle || focused.outlineWidth !== rest.outlineWidth
        || focused.outlineColor !== rest.outlineColor);
  const shadow = focused.boxShadow !== "none" && focused.boxShadow !== rest.boxShadow;
  copy.remove();
  const href = el.getAttribute("href") || "";
  return {
    show: el.outerHTML.replace(/\\s+/g, " ").slice(0, 120),
    isMain: el === main,
    inMain: !!main && main.contains(el),
    skipsToMain: !!main && !!main.id && href === `#${main.id}`,
    primary: el.hasAttribute("data-a11y-primary"),
    visible: outline || shadow,
  };
}
"""

# On a fresh organisation's list page: the empty state and the next step it offers.
EMPTY_STATE = """
() => {
  const seen = (el) => el.getClientRects().length > 0;
  const states = Array.from(document.querySelectorAll("main .empty-state, main .empty")).filter(seen);
  return states.map((el) => ({
    text: el.textContent.replace(/\\s+/g, " ").trim(),
    actions: Array.from(el.querySelectorAll("a[href], button")).filter(seen).map((a) => a.textContent.trim()),
  }));
}
"""

# Error words a person should never read: raw field names, Python reprs, internals.
RAW_ERROR = re.compile(
    r"non_field_errors|__all__|ErrorDetail|ValidationError|Traceback|object at 0x|<class |\[\s*'|\{\s*'|"
    r"\b[a-z]+_[a-z0-9_]+\b"  # snake_case: a field or code name, not a word
)
ERROR_TEXT = """
() => Array.from(document.querySelectorAll(
  "main .error, main .errorlist, main [role=alert], main .alert, main .message, main .messages li, main .form-errors"
)).filter((el) => el.getClientRects().length > 0).map((el) => el.textContent.replace(/\\s+/g, " ").trim())
  .filter(Boolean)
"""

# Empties the text fields of the main POST form (the one holding the primary action, else the first with text
# fields), turns off the browser's own validation so the server answers, and marks its submit button.
EMPTY_THE_FORM = """
() => {
  const textual = "input:not([type]), input[type=text], input[type=email], input[type=number], input[type=url], "
    + "input[type=password], input[type=search], input[type=tel], textarea";
  const forms = Array.from(document.querySelectorAll("main form")).filter(
    (f) => (f.getAttribute("method") || "get").toLowerCase() === "post" && f.querySelector(textual)
      && f.getClientRects().length > 0);
  const form = forms.find((f) => f.querySelector("[data-a11y-primary]")) || forms[0];
  if (!form) return null;
  form.noValidate = true;
  for (const el of form.querySelectorAll(textual)) { el.value = ""; el.removeAttribute("required"); }
  const submit = form.querySelector("[data-a11y-primary]")
    || form.querySelector("button[type=submit], button:not([type]), input[type=submit]");
  if (!submit) return null;
  submit.setAttribute("data-a11y-submit", "");
  return form.getAttribute("action") || location.pathname;
}
"""


def settle(page) -> None:
    page.wait_for_load_state("load")
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")


def keyboard_problems(page) -> list[str]:
    """Tab from the top of the freshly loaded page: a skip link first (when anything focusable precedes main), focus
    visible on everything reached, and the primary action among them."""
    problems: list[str] = []
    primary = page.evaluate(MARK_PRIMARY)
    page.keyboard.press("Tab")
    first = page.evaluate(FOCUSED)
    if first is None:
        return ["Tab focuses nothing"] if primary else []
    steps = [first]
    if not first["inMain"]:
        if not first["skipsToMain"]:
            return [f"the first Tab lands on {first['show']}, not on a skip link to main"]
        if not first["visible"]:
            problems.append("the skip link has no visible focus")
        page.keyboard.press("Enter")
        landed = page.evaluate(FOCUSED)
        if not landed or not landed["isMain"]:
            return [*problems, f"the skip link moves focus to {landed and landed['show']}, not to main"]
        steps = []
    for _ in range(TAB_LIMIT):
        if steps and steps[-1]["primary"]:
            break
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        if focused is None:
            break
        steps.append(focused)
    problems += [f"no visible focus on {step['show']}" for step in steps if not step["visible"]]
    if primary and not any(step["primary"] for step in steps):
        problems.append(f"the primary action “{primary}” is not reached by Tab")
    return problems


def check_page(page, url: str, slug: str, width: int, *, tabbing: bool = True) -> list[str]:
    if url:
        response = page.goto(url)
        assert response is not None and response.status < 500, f"{slug}: {response and response.status}"
    settle(page)
    problems = page.evaluate(PAGE_CHECKS)
    if width == 390:
        page.screenshot(path=str(SCREENSHOTS / f"{slug}-390.png"), full_page=True)
    if tabbing:
        if url:
            page.goto(url)  # focus from the top, scroll at 0
            settle(page)
        problems += keyboard_problems(page)
    return [f"{slug} at {width}px: {problem}" for problem in problems]


def slug_of(name: str) -> str:
    return name.removeprefix("ui:") or "home"


@pytest.fixture
def world(transactional_db):
    """An organisation with one of everything (the isolation matrix's World), its Super Administrator with a second
    factor, and a fresh organisation of the same user with nothing in it."""
    organisation = OrganisationFactory(team_name="lab", display_name="Lab", require_2fa=True)
    user = UserFactory(email="admin@lab.test", name="Ada Admin")
    MembershipFactory(organisation=organisation, user=user, role=Role.SUPER_ADMIN)
    device = add_second_factor(user)
    fresh = OrganisationFactory(team_name="fresh", display_name="Fresh", require_2fa=True)
    MembershipFactory(organisation=fresh, user=user, role=Role.SUPER_ADMIN)
    data = World(organisation, user)
    for kwarg in REGISTRY:
        REGISTRY[kwarg](data)  # create every object now, before the browser's event loop runs
    zone_mark_verified(zone=data.zone, actor=Actor.cli())  # certificates are for verified zones
    invitee = UserFactory(email="new@lab.test")
    _, secret = invitation_create(organisation=organisation, email=invitee.email, role="admin", actor=Actor(user=user))
    reset = {
        "uidb64": urlsafe_base64_encode(force_bytes(invitee.pk)),
        "token": default_token_generator.make_token(invitee),
    }
    return {"world": data, "user": user, "device": device, "fresh": fresh, "secret": secret, "reset": reset}


def organisation_pages(data: World) -> list[tuple[str, str]]:
    """(url name, URL) of every organisation route of the UI, and an error if a route is not classified."""
    pages, unknown = [], []
    for route in all_routes():
        if route.is_api:
            continue
        if "account_id" not in route.kwargs:
            if route.route not in OUTSIDE_ORGANISATION:
                unknown.append(str(route))
            continue
        url = build_url(route, data)
        pages.append((resolve(url).view_name, url))
    assert not unknown, f"classify these routes in OUTSIDE_ORGANISATION of {__file__}: {unknown}"
    return pages


def sign_in(page, base: str, user, device) -> list[str]:
    page.goto(base + "/login/")
    page.fill("input[name=email]", user.email)
    page.fill("input[name=password]", DEFAULT_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/login/verify/.*"))
    problems = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        problems += check_page(page, "", "login-verify", width, tabbing=False)
    page.fill("input[name=code]", totp_code(device))
    page.click("button:has-text('Verify')")
    page.wait_for_url(re.compile(r".*/o/.*"))
    return problems


def launch(sync_api):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's Chromium is not installed")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return sync_api.sync_playwright()


def test_every_page_at_390_and_1280_px_keyboard_and_labels(world, daphne_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    sync_api = pytest.importorskip("playwright.sync_api")
    base = daphne_server.url
    data: World = world["world"]
    pages = organisation_pages(data)
    problems: list[str] = []
    checked: list[str] = []
    with launch(sync_api) as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # Signed out: sign-in, password reset, an invitation.
            anonymous = browser.new_page(viewport={"width": 1280, "height": 900})
            anonymous.set_default_timeout(15_000)
            kwargs = {**world["reset"], "secret": world["secret"]}
            for route in all_routes():
                if OUTSIDE_ORGANISATION.get(route.route) != ANONYMOUS:
                    continue
                url = "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: kwargs[m.group(1)], route.route)
                for width in WIDTHS:
                    anonymous.set_viewport_size({"width": width, "height": 900})
                    problems += check_page(anonymous, base + url, slug_of(resolve(url).view_name), width)
                checked.append(url)

            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)
            problems += sign_in(page, base, world["user"], world["device"])
            signed_in = [
                (resolve("/" + route.route).view_name, "/" + route.route)
                for route in all_routes()
                if OUTSIDE_ORGANISATION.get(route.route) == SIGNED_IN
            ]
            # The admin UI's own error page: an object that does not exist.
            missing = reverse("ui:tunnel", args=[data.org_a.account_id, "0" * 32])
            for name, url in [*signed_in, *pages, ("ui:error-404", missing)]:
                response = page.request.get(base + url, max_redirects=0)
                if response.status == 405:
                    continue  # an action: POST only
                kind = response.headers.get("content-type", "")
                if "text/html" not in kind:
                    continue  # a download (a certificate, its key)
                if response.status in (301, 302):
                    problems.append(f"{name}: GET {url} redirects to {response.headers.get('location')}")
                    continue
                if name != "ui:error-404" and response.status != 200:
                    problems.append(f"{name}: GET {url} answered {response.status}")
                    continue
                for width in WIDTHS:
                    page.set_viewport_size({"width": width, "height": 900})
                    problems += check_page(page, base + url, slug_of(name), width)
                checked.append(url)
        finally:
            browser.close()
    assert len(checked) > 40, checked
    assert not problems, f"{len(problems)} problems on {len(checked)} pages:\n" + "\n".join(problems)


def test_access_login_and_error_pages(world, daphne_server, monkeypatch):  # noqa: F811
    """The pages people outside the team see: the Access login page on the team domain, the edge's error pages,
    and the control plane's page for a request it cannot understand."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    sync_api = pytest.importorskip("playwright.sync_api")
    data: World = world["world"]
    host = data.access_app.domain
    team = f"http://{data.org_a.team_name}.access.localhost:{daphne_server.port}"
    login = f"{team}/cdn-cgi/access/login/{host}?redirect_url=https%3A%2F%2F{host}%2F"
    problems: list[str] = []
    with launch(sync_api) as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)
            for width in WIDTHS:
                page.set_viewport_size({"width": width, "height": 900})
                problems += check_page(page, login, "access-login", width)
                page.goto(login)
                page.fill("input[name=email]", "someone@lab.test")
                page.click("button[type=submit]")
                page.wait_for_selector("input[name=code]")
                problems += check_page(page, "", "access-login-code", width)
                # A Host the control plane does not serve: its 400 page.
                problems += check_page(page, f"http://unknown.localhost:{daphne_server.port}/login/", "problem", width)
                for status in TITLES:
                    body, _ = error_body(status, "0123456789abcdef", "", as_json=False, host=host)
                    page.set_content(body.decode())
                    problems += check_page(page, "", f"edge-{status}", width)
        finally:
            browser.close()
    assert not problems, "\n".join(problems)


def test_fresh_organisation_lists_say_what_to_do_next(world, daphne_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    sync_api = pytest.importorskip("playwright.sync_api")
    fresh = world["fresh"]
    unclassified = []
    lists = []
    for route in all_routes():
        if route.is_api or route.kwargs != ["account_id"]:
            continue
        url = "/" + route.route.replace("<str:account_id>", fresh.account_id)
        name = resolve(url).view_name
        if name in LISTS:
            lists.append((name, url))
        elif name not in NOT_LISTS:
            unclassified.append(name)
    assert not unclassified, f"a page of an organisation: add it to LISTS or NOT_LISTS in {__file__}: {unclassified}"
    assert {name for name, _ in lists} == LISTS
    problems: list[str] = []
    with launch(sync_api) as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            page.set_default_timeout(15_000)
            sign_in(page, daphne_server.url, world["user"], world["device"])
            for name, url in lists:
                page.goto(daphne_server.url + url)
                settle(page)
                states = page.evaluate(EMPTY_STATE)
                page.screenshot(path=str(SCREENSHOTS / f"empty-{slug_of(name)}-390.png"), full_page=True)
                if not states:
                    problems.append(f"{name}: no empty state on a fresh organisation")
                elif not any(state["actions"] for state in states):
                    problems.append(f"{name}: the empty state “{states[0]['text']}” offers no next step")
        finally:
            browser.close()
    assert not problems, "\n".join(problems)


def test_forms_submitted_empty_answer_in_words(world, daphne_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    sync_api = pytest.importorskip("playwright.sync_api")
    base = daphne_server.url
    data: World = world["world"]
    pages = [(name, url) for name, url in organisation_pages(data)]
    pages += [
        ("ui:password-change", reverse("ui:password-change")),
        ("ui:organisation-create", reverse("ui:organisation-create")),
    ]
    problems: list[str] = []
    submitted: list[str] = []
    messages: list[str] = []
    with launch(sync_api) as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)
            sign_in(page, base, world["user"], world["device"])
            for name, url in pages:
                response = page.request.get(base + url, max_redirects=0)
                if response.status != 200 or "text/html" not in response.headers.get("content-type", ""):
                    continue
                page.goto(base + url)
                page.evaluate(MARK_PRIMARY)
                if page.evaluate(EMPTY_THE_FORM) is None:
                    continue
                with page.expect_navigation() as navigation:
                    page.click("[data-a11y-submit]")
                answer = navigation.value
                submitted.append(name)
                if answer is not None and answer.status >= 500:
                    problems.append(f"{name}: an empty form gets a {answer.status}")
                    continue
                for message in page.evaluate(ERROR_TEXT):
                    messages.append(message)
                    if RAW_ERROR.search(message):
                        problems.append(f"{name}: “{message}”")
        finally:
            browser.close()
    assert len(submitted) > 10 and len(messages) > 10, (submitted, messages)
    assert not problems, "\n".join(problems)
