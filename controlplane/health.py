"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    """The process answers."""
    return JsonResponse({"status": "ok"})


def bench_trivial(request: HttpRequest) -> JsonResponse:
    """bench/api's ceiling: the same middleware and server as every API call, no database, no authentication."""
    return JsonResponse({"success": True, "result": {"ok": True}})


def readyz(request: HttpRequest) -> JsonResponse:
    """The process can serve: its database answers (and the channel layer, when Redis is configured)."""
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready; say which
        checks["database"] = f"error: {exc.__class__.__name__}"
    from django.conf import settings

    if getattr(settings, "REDIS_URL", None):
        try:
            import redis

            redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2).ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {exc.__class__.__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


class HealthCheckMiddleware:
    """Answers /healthz and /readyz before anything checks the Host header: probes call the loopback address,
    which a production ALLOWED_HOSTS rightly does not list."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        if request.path == "/healthz":
            return healthz(request)
        if request.path == "/readyz":
            return readyz(request)
        return self.get_response(request)
