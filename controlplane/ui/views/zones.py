"""Zones: the domains an organisation owns, proven with a DNS TXT record."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.generic import TemplateView

from controlplane.choices import Level, Resource, ZoneStatus
from controlplane.models import Zone
from controlplane.services.zones import zone_check_verification, zone_create, zone_delete
from controlplane.ui.forms import ZoneForm
from controlplane.ui.mixins import OrgRequiredMixin, apply_service_error


class ZoneListView(OrgRequiredMixin, TemplateView):
    resource = Resource.ZONES
    nav = "zones"
    template_name = "ui/zones/list.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(
            zones=Zone.objects.for_org(self.organisation),
            can_edit=self.access.can(Resource.ZONES, Level.EDIT),
            auto_verify=settings.ZONES_AUTO_VERIFY,
        )
        context.setdefault("form", ZoneForm())
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = ZoneForm(request.POST)
        if form.is_valid():
            try:
                zone = zone_create(organisation=self.organisation, name=form.cleaned_data["name"], actor=self.actor)
            except (ValidationError, PermissionDenied) as exc:
                apply_service_error(form, exc)
            else:
                if zone.status == ZoneStatus.ACTIVE:
                    messages.success(request, f"{zone.name} is added and active.")
                else:
                    messages.success(request, f"{zone.name} is added. Publish the TXT record below to verify it.")
                return redirect("ui:zone", account_id=self.organisation.account_id, zone_id=zone.id.hex)
        return self.render_to_response(self.get_context_data(form=form))


class ZoneDetailView(OrgRequiredMixin, TemplateView):
    resource = Resource.ZONES
    nav = "zones"
    template_name = "ui/zones/detail.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(
            zone=self.get_org_object(Zone, kwargs["zone_id"]),
            can_edit=self.access.can(Resource.ZONES, Level.EDIT),
        )
        return context


class ZoneCheckView(OrgRequiredMixin, TemplateView):
    resource = Resource.ZONES
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        zone = self.get_org_object(Zone, kwargs["zone_id"])
        zone = zone_check_verification(zone=zone, actor=self.actor)
        if zone.status == ZoneStatus.ACTIVE:
            messages.success(request, f"{zone.name} is verified and active.")
        else:
            messages.error(request, f"Not verified yet. {zone.last_check_error}".strip())
        return redirect("ui:zone", account_id=self.organisation.account_id, zone_id=zone.id.hex)


class ZoneDeleteView(OrgRequiredMixin, TemplateView):
    resource = Resource.ZONES
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        zone = self.get_org_object(Zone, kwargs["zone_id"])
        name = zone.name
        try:
            zone_delete(zone=zone, actor=self.actor)
        except (ValidationError, PermissionDenied) as exc:
            messages.error(request, " ".join(exc.messages if isinstance(exc, ValidationError) else [str(exc)]))
            return redirect("ui:zone", account_id=self.organisation.account_id, zone_id=zone.id.hex)
        messages.success(request, f"{name} is deleted.")
        return redirect("ui:zones", account_id=self.organisation.account_id)
