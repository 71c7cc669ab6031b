from __future__ import annotations

import datetime

from django.db import models


class TunnelStatus(models.TextChoices):
    INACTIVE = "inactive", "Inactive"
    HEALTHY = "healthy", "Healthy"
    DEGRADED = "degraded", "Degraded"
    DOWN = "down", "Down"


STATUS_MEANING = {
    TunnelStatus.INACTIVE: "No connector has ever connected. Install and run a connector with the tunnel's token.",
    TunnelStatus.HEALTHY: "Every running connector has all its connections up.",
    TunnelStatus.DEGRADED: "Serving traffic, but some connections are down.",
    TunnelStatus.DOWN: "Was connected before; no connector is connected now.",
}


# Origin errors older than this are deleted (edge/errors.py) and never shown (tunnels/selectors.py).
ORIGIN_ERROR_MAX_AGE = datetime.timedelta(days=7)
