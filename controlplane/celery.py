"""The Celery app. Without REDIS_URL tasks run in-process, off the caller's thread (embedded mode:
controlplane/embedded_tasks.py)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

app = Celery("controlplane", task_cls="controlplane.embedded_tasks:Task")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
