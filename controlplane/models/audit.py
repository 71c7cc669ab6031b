"""The append-only audit log."""

from __future__ import annotations

import contextvars
import uuid

from django.conf import settings
from django.db import models

from controlplane.choices import AuditAction, Interface
from controlplane.scoping import OrgManager, OrgOwnedModel, OrgQuerySet


class AppendOnlyError(RuntimeError):
    pass


class AuditBypassError(RuntimeError):
    """An audit row written outside `controlplane.services.audit`, which alone gives every row the same shape."""


# Set by the audit service around its inserts; any other insert is refused.
audit_service_writing: contextvars.ContextVar[bool] = contextvars.ContextVar("audit_service_writing", default=False)


def _check_written_by_the_service() -> None:
    if not audit_service_writing.get():
        raise AuditBypassError("Write audit events with controlplane.services.audit (audit_record / audit_records).")


class AuditQuerySet(OrgQuerySet):
    """Reads only: the log is append-only, in bulk as row by row."""

    def update(self, **kwargs):
        self._check_scoped()
        raise AppendOnlyError("Audit events cannot be changed.")

    def delete(self):
        self._check_scoped()
        raise AppendOnlyError("Audit events cannot be deleted.")

    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        for obj in objs:
            self._check_row(obj)
        _check_written_by_the_service()
        return super().bulk_create(objs, *args, **kwargs)


class AuditManager(OrgManager.from_queryset(AuditQuerySet)):  # type: ignore[misc]
    pass


class AuditEvent(OrgOwnedModel):
    """Who did what to which object of an organisation, from where. Rows are never updated or deleted."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    action = models.CharField(max_length=32, choices=AuditAction.choices)
    resource_type = models.CharField(max_length=64)
    resource_id = models.CharField(max_length=64, blank=True)
    resource_name = models.CharField(max_length=255, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    actor_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    actor_email = models.CharField(max_length=254, blank=True)
    actor_type = models.CharField(max_length=16, default="user")  # user | token | system | connector
    actor_token_id = models.UUIDField(null=True, blank=True)
    interface = models.CharField(max_length=16, choices=Interface.choices, default=Interface.SYSTEM)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)

    objects = AuditManager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organisation", "-created_at"], name="controlplane_audit_org_time")]

    def __str__(self) -> str:
        return f"{self.actor_email or self.actor_type} {self.action} {self.resource_type} {self.resource_name}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise AppendOnlyError("Audit events cannot be changed.")
        _check_written_by_the_service()
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Audit events cannot be deleted.")
