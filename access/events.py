"""Access changed for an organisation: every process's edge drops its cached view of that organisation's
applications, policies, keys and revocations (published after commit, through the hubs like tunnel events)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

from tunnels.events import Event, publish_on_commit


@dataclass(frozen=True)
class AccessChanged(Event):
    KIND: ClassVar[str] = "access"
    organisation_id: uuid.UUID

    def to_wire(self) -> dict[str, Any]:
        return {"kind": self.KIND, "org": str(self.organisation_id)}

    @classmethod
    def parse(cls, wire: dict[str, Any]) -> Event:
        return cls(organisation_id=uuid.UUID(str(wire["org"])))


def access_changed(*, organisation_id: Any) -> None:
    publish_on_commit(AccessChanged(uuid.UUID(str(organisation_id))))
