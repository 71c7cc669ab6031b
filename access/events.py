"""Access changed for an organisation: every process's edge drops its cached view of that organisation's
applications, policies, keys and revocations (published after commit, through the hubs like tunnel events)."""

from __future__ import annotations

from typing import Any

from django.db import transaction


def access_changed(*, organisation_id: Any) -> None:
    from tunnels.hub import publish

    event = {"kind": "access", "org": str(organisation_id)}
    transaction.on_commit(lambda: publish(event))
