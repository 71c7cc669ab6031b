"""Template context shared by every page of the UI shell."""

from __future__ import annotations

from typing import Any

from django.conf import settings


def shell(request: Any) -> dict[str, Any]:
    return {
        "EMAIL_OUTBOX_MODE": settings.EMAIL_OUTBOX_MODE,
        "AUTH_DOMAIN": settings.AUTH_DOMAIN,
        "CONTROLPLANE_MODE": settings.MODE,
    }
