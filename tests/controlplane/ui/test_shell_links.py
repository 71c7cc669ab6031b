"""The UI shell's links (controlplane/templatetags/ui_shell.py), reversed once per process: the URLs `{% url %}`
gives, under the request's URL prefix too."""

from __future__ import annotations

import pytest
from django.urls import reverse, set_script_prefix

from controlplane.templatetags.ui_shell import (
    ORGANISATION_PAGES,
    SHELL_PAGES,
    organisation_url,
    organisation_urls,
    shell_urls,
)


@pytest.mark.parametrize("prefix", ["/", "/cp/"])
def test_shell_links_are_the_reversed_urls(org_a, org_b, prefix):
    set_script_prefix(prefix)
    try:
        for org in (org_a, org_b):
            links = organisation_urls(org)
            assert links == {name: reverse(f"ui:{name}", args=[org.account_id]) for name in ORGANISATION_PAGES}
            assert links["tunnels"] == f"{prefix}o/{org.account_id}/tunnels/"
            for name in ("ui:overview", "ui:connectors", "ui:tunnel-notifications"):
                assert organisation_url(org, name) == reverse(name, args=[org.account_id])
        assert shell_urls() == {name.replace("-", "_"): reverse(f"ui:{name}") for name in SHELL_PAGES}
        assert shell_urls()["logout"].startswith(prefix)
    finally:
        set_script_prefix("/")
