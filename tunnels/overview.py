"""The tunnels' part of the overview: their health summary and the tutorial's tunnel steps (registered with the
core in TunnelsConfig.ready)."""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from controlplane.choices import Resource
from controlplane.ui.extensions import OverviewPart, TutorialStep
from tunnels.selectors import tunnel_summary


def overview_part(*, organisation: Any, access: Any, zones: list[Any]) -> OverviewPart:
    if not access.can(Resource.TUNNELS):
        return OverviewPart(context={"tunnels": None})
    tunnels = tunnel_summary(organisation=organisation)
    account_id = organisation.account_id
    tunnels_url = reverse("ui:tunnels", args=[account_id])
    idle = tunnels.idle
    target = tunnels.serving or idle
    steps = [
        TutorialStep(
            "Create a tunnel",
            "A tunnel links a server to the edge without opening any inbound port.",
            f"{tunnels_url}#create",
            "Create a tunnel",
            tunnels.total > 0,
        ),
        TutorialStep(
            f"Run the connector of {idle.name}" if idle and not tunnels.any_serving else "Run a connector",
            "Paste the install command on the server that can reach your services.",
            reverse("ui:tunnel", args=[account_id, idle.id.hex]) + "#install" if idle else tunnels_url,
            "Install the connector",
            tunnels.any_serving,
        ),
        TutorialStep(
            "Add a public hostname",
            "Route a hostname under your zone to a service the connector reaches, e.g. http://localhost:3001.",
            reverse("ui:tunnel-hostname-add", args=[account_id, target.id.hex]) if target else tunnels_url,
            "Add a public hostname",
            tunnels.public_hostnames > 0,
        ),
    ]
    return OverviewPart(context={"tunnels": tunnels}, steps=steps)
