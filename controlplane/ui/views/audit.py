"""The audit log: read-only, paginated and filterable."""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.timesince import timesince
from django.views.generic import TemplateView

from controlplane.choices import AuditAction, Interface, Resource
from controlplane.models import AuditEvent
from controlplane.ui.forms import AuditFilterForm
from controlplane.ui.mixins import OrgRequiredMixin

PAGE_SIZE = 25
_RULE = re.compile(r"^ingress\[(\d+)\]$")


def _display(value: Any) -> str:
    if value is None or value == "" or value == [] or value == {}:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list) and all(isinstance(item, (str, int, float)) for item in value):
        return ", ".join(str(item) for item in value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _setting_labels() -> dict[str, str]:
    from controlplane.ui.extensions import audit_field_labels

    return audit_field_labels


def _label(path: str) -> str:
    """A changed field as the UI names it: `ingress[0].originRequest.noTLSVerify` → "rule 1 › No TLS verify"."""
    labels = _setting_labels()
    words = []
    for part in path.split("."):
        rule = _RULE.match(part)
        if rule:
            words.append(f"rule {int(rule.group(1)) + 1}")
        elif part == "originRequest":
            continue
        else:
            words.append(labels.get(part) or part.replace("_", " "))
    return " › ".join(words) or path


def _leaves(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_leaves(item, f"{prefix}.{key}"))
        return out
    return {prefix: value}


@dataclass(frozen=True)
class Change:
    field: str
    old: str
    new: str
    is_pair: bool

    @property
    def old_is_empty(self) -> bool:
        return self.old == "—"

    @property
    def new_is_empty(self) -> bool:
        return self.new == "—"


@dataclass(frozen=True)
class AuditRow:
    event: AuditEvent
    action_label: str
    interface_label: str
    changes: list[Change]

    @property
    def resource_label(self) -> str:
        return self.event.resource_type.replace("_", " ") or "—"

    @property
    def ago(self) -> str:
        seconds = (timezone.now() - self.event.created_at).total_seconds()
        return "just now" if seconds < 60 else f"{timesince(self.event.created_at)} ago"

    @property
    def actor(self) -> str:
        event = self.event
        if event.actor_email:
            return event.actor_email
        if event.actor_type == "token":
            return f"API token {event.actor_token_id.hex[:8] if event.actor_token_id else ''}".strip()
        return event.user_agent or event.actor_type


def changes_of(event: AuditEvent) -> list[Change]:
    """The event's changes as a before → after list, one line per changed value: objects (an ingress rule, its
    settings) are split into their fields, and fields that did not change inside them are left out."""
    rows = []
    for field, value in sorted((event.changes or {}).items()):
        if isinstance(value, list) and len(value) == 2:
            old, new = value
            if isinstance(old, dict) or isinstance(new, dict):
                before = _leaves(old, field) if old else {}
                after = _leaves(new, field) if new else {}
                for path in sorted(set(before) | set(after)):
                    if before.get(path) != after.get(path):
                        rows.append(Change(_label(path), _display(before.get(path)), _display(after.get(path)), True))
                continue
            rows.append(Change(_label(field), _display(old), _display(new), True))
        else:
            rows.append(Change(_label(field), "", _display(value), False))
    return rows


def audit_rows(events: Iterable[AuditEvent]) -> list[AuditRow]:
    actions = dict(AuditAction.choices)
    interfaces = dict(Interface.choices)
    return [
        AuditRow(
            event=event,
            action_label=actions.get(event.action, event.action),
            interface_label=interfaces.get(event.interface, event.interface),
            changes=changes_of(event),
        )
        for event in events
    ]


def filter_events(events: QuerySet[AuditEvent], data: dict[str, Any]) -> QuerySet[AuditEvent]:
    if data.get("action"):
        events = events.filter(action=data["action"])
    if data.get("resource_type"):
        events = events.filter(resource_type=data["resource_type"])
    if data.get("object"):
        text = data["object"].strip()
        events = events.filter(
            Q(resource_name__icontains=text)
            | Q(resource_id__iexact=text)
            | Q(resource_id__iexact=text.replace("-", ""))
        )
    if data.get("actor"):
        events = events.filter(actor_email__icontains=data["actor"].strip())
    if data.get("since"):
        start = datetime.datetime.combine(data["since"], datetime.time(), tzinfo=datetime.UTC)
        events = events.filter(created_at__gte=start)
    if data.get("until"):
        end = datetime.datetime.combine(
            data["until"] + datetime.timedelta(days=1), datetime.time(), tzinfo=datetime.UTC
        )
        events = events.filter(created_at__lt=end)
    return events


class AuditLogView(OrgRequiredMixin, TemplateView):
    resource = Resource.AUDIT
    nav = "audit"
    template_name = "ui/audit/list.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        events = AuditEvent.objects.for_org(self.organisation)
        resource_types = list(events.order_by("resource_type").values_list("resource_type", flat=True).distinct())
        form = AuditFilterForm(self.request.GET or None, resource_types=resource_types)
        if form.is_bound and form.is_valid():
            events = filter_events(events, form.cleaned_data)
            filters = {key: value for key, value in self.request.GET.items() if key != "page" and value}
        else:
            filters = {}
        page = Paginator(events, PAGE_SIZE).get_page(self.request.GET.get("page"))
        context.update(
            filter_form=form,
            page=page,
            rows=audit_rows(page.object_list),
            filter_query=urlencode(filters),
            filtered=bool(filters),
        )
        return context


class AuditEventView(OrgRequiredMixin, TemplateView):
    resource = Resource.AUDIT
    nav = "audit"
    template_name = "ui/audit/detail.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        event = self.get_org_object(AuditEvent, kwargs["event_id"])
        context["row"] = audit_rows([event])[0]
        return context
