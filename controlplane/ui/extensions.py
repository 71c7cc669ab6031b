"""What product apps add to the core's screens. They register from their `AppConfig.ready`; the core never imports
them (docs/architecture.md, "Layers")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TutorialStep:
    title: str
    text: str
    url: str
    action: str
    done: bool


@dataclass
class OverviewPart:
    """An app's part of the overview: template context, and the tutorial steps it owns (after the core's)."""

    context: dict[str, Any] = field(default_factory=dict)
    steps: list[TutorialStep] = field(default_factory=list)


# (organisation, access, zones) -> OverviewPart, in registration order.
overview_parts: list[Callable[..., OverviewPart]] = []
# Field names of audit changes -> the words the UI uses for them (e.g. noTLSVerify -> "No TLS verify").
audit_field_labels: dict[str, str] = {}


def register_overview_part(provider: Callable[..., OverviewPart]) -> None:
    if provider not in overview_parts:
        overview_parts.append(provider)
