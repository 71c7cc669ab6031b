"""The outbox of embedded mode: mail about this organisation, kept instead of sent (invitations, notices)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.paginator import Paginator
from django.http import HttpRequest
from django.views.generic import TemplateView

from controlplane.choices import Resource
from controlplane.errors import NotFound
from controlplane.models import OutboxMessage
from controlplane.ui.mixins import OrgRequiredMixin

PAGE_SIZE = 50


class OutboxMixin(OrgRequiredMixin):
    resource = Resource.AUDIT
    nav = "outbox"

    def resolve_access(self, request: HttpRequest, **kwargs: Any) -> None:
        super().resolve_access(request, **kwargs)
        if not settings.EMAIL_OUTBOX_MODE:
            raise NotFound("Mail is sent by SMTP on this installation; there is no outbox.")


class OutboxListView(OutboxMixin, TemplateView):
    template_name = "ui/outbox/list.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        messages = OutboxMessage.objects.for_org(self.organisation).defer("body", "html_body")
        context["page"] = Paginator(messages, PAGE_SIZE).get_page(self.request.GET.get("page"))
        return context


class OutboxMessageView(OutboxMixin, TemplateView):
    template_name = "ui/outbox/detail.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["message"] = self.get_org_object(OutboxMessage, kwargs["message_id"])
        return context
