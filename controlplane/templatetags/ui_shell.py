"""The links of the UI shell (ui/layouts/app.html), drawn on every page: reversed once per process rather than by a
`{% url %}` each on every page (16 of them, ~10 % of a page's CPU; issue 13). The URLs are the ones `{% url %}`
gives: reversed by Django with the request's URL prefix and URLconf (each its own cached set). `organisation_url`
does the same for any page of an organisation (the switcher's links, a list's buttons)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django import template
from django.urls import get_script_prefix, get_urlconf, reverse

register = template.Library()

# Stands in for an organisation's account id (its id's hex: nothing in it is quoted) in the reversed URLs.
_STAND_IN = "0" * 32
ORGANISATION_PAGES = (
    "overview",
    "tunnels",
    "access",
    "certificates",
    "zones",
    "members",
    "tokens",
    "audit",
    "outbox",
    "settings",
)
SHELL_PAGES = ("home", "account", "two-factor", "password-change", "logout", "organisation-create")


@lru_cache(maxsize=32)
def _reversed(prefix: str, urlconf: Any) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    # `prefix` and `urlconf` are the cache's key: reverse() reads them from the request's context itself.
    shell = {name.replace("-", "_"): reverse(f"ui:{name}") for name in SHELL_PAGES}
    organisation = {
        name: reverse(f"ui:{name}", args=[_STAND_IN]).partition(_STAND_IN)[::2] for name in ORGANISATION_PAGES
    }
    return shell, organisation  # type: ignore[return-value]


@lru_cache(maxsize=256)
def _one_reversed(prefix: str, urlconf: Any, name: str) -> tuple[str, str]:
    # The URLs named in templates are a fixed set: the cache is bounded anyway.
    return reverse(name, args=[_STAND_IN]).partition(_STAND_IN)[::2]  # type: ignore[return-value]


@register.simple_tag
def shell_urls() -> dict[str, str]:
    """`{% shell_urls as urls %}`: `urls.home`, `urls.two_factor`, … (dashes as underscores)."""
    return _reversed(get_script_prefix(), get_urlconf())[0]


@register.filter
def organisation_urls(organisation: Any) -> dict[str, str]:
    """`organisation|organisation_urls`: the organisation's pages by URL name (`overview`, `tunnels`, …)."""
    parts = _reversed(get_script_prefix(), get_urlconf())[1]
    account_id = organisation.account_id
    return {name: f"{head}{account_id}{tail}" for name, (head, tail) in parts.items()}


@register.filter
def organisation_url(organisation: Any, name: str) -> str:
    """`organisation|organisation_url:"ui:connectors"`: what `{% url "ui:connectors" organisation.account_id %}`
    gives (a page whose one argument is the organisation's account id), the URL reversed once per process."""
    head, tail = _one_reversed(get_script_prefix(), get_urlconf(), name)
    return f"{head}{organisation.account_id}{tail}"
