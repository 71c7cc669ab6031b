"""Template context shared by every page of the UI shell."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils.functional import SimpleLazyObject

from controlplane.choices import NOT_AVAILABLE_YET
from controlplane.models import Membership


def _memberships(user: Any) -> list[Membership]:
    return list(
        Membership.objects.filter(user=user)
        .unscoped("the signed-in user's own memberships, for the organisation switcher")
        .select_related("organisation")
        .order_by("organisation__display_name", "organisation__team_name")
    )


def shell(request: Any) -> dict[str, Any]:
    context: dict[str, Any] = {
        "EMAIL_OUTBOX_MODE": settings.EMAIL_OUTBOX_MODE,
        "AUTH_DOMAIN": settings.AUTH_DOMAIN,
        "CONTROLPLANE_MODE": settings.MODE,
        "PUBLIC_URL": settings.PUBLIC_URL,
        "NOT_AVAILABLE_YET": NOT_AVAILABLE_YET,
        # Shown in examples: the address this browser reaches the API on (mail links use PUBLIC_URL instead).
        "API_BASE_URL": request.build_absolute_uri("/client/v4") if hasattr(request, "build_absolute_uri") else "",
    }
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        # Lazy: only pages that draw the organisation switcher pay for the query.
        context["nav_memberships"] = SimpleLazyObject(lambda: _memberships(user))
    return context
