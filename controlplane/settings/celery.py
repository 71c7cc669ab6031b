"""Celery: tasks run in-process without REDIS_URL (on a small pool of threads, controlplane/embedded_tasks.py);
with it, a Redis broker and separate workers."""

from __future__ import annotations

from .env import env_int, env_str

_redis = env_str("REDIS_URL")

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", _redis) or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = _redis is None and env_str("CELERY_BROKER_URL") is None
CELERY_TASK_EAGER_PROPAGATES = False
# Embedded mode: threads running tasks (alerts, webhooks, mail) off the request path, and how many may wait.
EMBEDDED_TASK_WORKERS = env_int("EMBEDDED_TASK_WORKERS", 4)
EMBEDDED_TASK_QUEUE_SIZE = env_int("EMBEDDED_TASK_QUEUE_SIZE", 1000)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# Periodic work, run by `celery -A controlplane beat` in the production topology.
CELERY_BEAT_SCHEDULE = {
    "check-pending-zones": {
        "task": "controlplane.tasks.check_pending_zones",
        "schedule": env_int("ZONE_RECHECK_SECONDS", 15 * 60),
    },
    # Signing keys older than their rotation interval (default 6 weeks), and spent login codes.
    "access-housekeeping": {"task": "access.tasks.housekeeping", "schedule": 3600},
    "certificate-expiry-reminders": {
        "task": "certificates.tasks.send_expiry_reminders",
        "schedule": env_int("CERTIFICATE_REMINDER_SECONDS", 3600),
    },
}
