"""Organisations: creating one, its overview, its settings, and the product sections still to come."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.generic import FormView, TemplateView

from controlplane.choices import InvitationStatus, Level, Resource, Role, ZoneStatus
from controlplane.models import ApiToken, AuditEvent, Invitation, Membership, Zone
from controlplane.services.organisations import organisation_create, organisation_update
from controlplane.ui import extensions
from controlplane.ui.extensions import TutorialStep
from controlplane.ui.forms import OrganisationCreateForm, OrganisationSettingsForm, TeamRenameForm
from controlplane.ui.mixins import OrgRequiredMixin, SignedInMixin, apply_service_error
from controlplane.ui.views.audit import audit_rows


class OrganisationCreateView(SignedInMixin, FormView):
    template_name = "ui/organisations/create.html"
    form_class = OrganisationCreateForm

    def form_valid(self, form: OrganisationCreateForm) -> HttpResponse:
        try:
            organisation = organisation_create(
                team_name=form.cleaned_data["team_name"],
                display_name=form.cleaned_data["display_name"],
                require_2fa=form.cleaned_data["require_2fa"],
                owner=self.request.user,  # type: ignore[arg-type]
                actor=self.actor,
            )
        except (ValidationError, PermissionDenied) as exc:
            apply_service_error(form, exc)
            return self.form_invalid(form)
        messages.success(self.request, f"{organisation} is created; you are its Super Administrator.")
        return redirect("ui:overview", account_id=organisation.account_id)


def tutorial_steps(*, account_id: str, zones: list[Zone]) -> list[TutorialStep]:
    """The tutorial's zone steps (README, docs/tunnels.md); apps add theirs (controlplane/ui/extensions.py)."""
    pending = next((zone for zone in zones if zone.status == ZoneStatus.PENDING), None)
    active = any(zone.status == ZoneStatus.ACTIVE for zone in zones)
    zone_url = reverse("ui:zones", args=[account_id])
    return [
        TutorialStep(
            "Add a zone",
            "Add your domain, so that hostnames under it can be routed.",
            zone_url,
            "Add a zone",
            bool(zones),
        ),
        TutorialStep(
            f"Verify {pending.name}" if pending and not active else "Verify the zone",
            "Prove you own it: publish the TXT record its page shows, then check it.",
            reverse("ui:zone", args=[account_id, pending.id.hex]) if pending else zone_url,
            "Verify the zone",
            active,
        ),
    ]


class OverviewView(OrgRequiredMixin, TemplateView):
    resource = Resource.SETTINGS
    nav = "overview"
    template_name = "ui/organisations/overview.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        org = self.organisation
        zones = list(Zone.objects.for_org(org).only("id", "name", "status").order_by("created_at"))
        active_tokens = [
            token for token in ApiToken.objects.for_org(org).filter(revoked_at__isnull=True) if token.status == "active"
        ]
        steps = tutorial_steps(account_id=org.account_id, zones=zones)
        parts = [provider(organisation=org, access=self.access, zones=zones) for provider in extensions.overview_parts]
        for part in parts:
            context.update(part.context)
            steps += part.steps
        context.update(
            counts={
                "members": Membership.objects.for_org(org).count(),
                "invitations": Invitation.objects.for_org(org).filter(status=InvitationStatus.PENDING).count(),
                "zones_active": sum(1 for zone in zones if zone.status == ZoneStatus.ACTIVE),
                "zones_pending": sum(1 for zone in zones if zone.status == ZoneStatus.PENDING),
                "tokens": len(active_tokens),
            },
            steps=steps,
            next_step=next((step for step in steps if not step.done), None),
            role_label=Role(self.access.role).label if self.access.role else "",
        )
        if self.access.can(Resource.AUDIT):
            context["recent_events"] = audit_rows(AuditEvent.objects.for_org(org)[:8])
        return context


class SettingsView(OrgRequiredMixin, TemplateView):
    """Name and 2FA requirement in one form; renaming the team (which changes the team domain) in another."""

    resource = Resource.SETTINGS
    nav = "settings"
    template_name = "ui/organisations/settings.html"

    def can_rename(self) -> bool:
        return self.access.role == Role.SUPER_ADMIN

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        org = self.organisation
        context.setdefault(
            "settings_form",
            OrganisationSettingsForm(initial={"display_name": org.display_name, "require_2fa": org.require_2fa}),
        )
        context.setdefault("rename_form", TeamRenameForm(current=org.team_name))
        context["can_rename"] = self.can_rename()
        context["can_edit"] = self.access.can(Resource.SETTINGS, Level.EDIT)
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.POST.get("form") == "rename":
            return self.rename(request)
        form = OrganisationSettingsForm(request.POST)
        if form.is_valid():
            try:
                organisation_update(organisation=self.organisation, actor=self.actor, **form.cleaned_data)
            except (ValidationError, PermissionDenied) as exc:
                apply_service_error(form, exc)
            else:
                messages.success(request, "Settings saved.")
                return redirect("ui:settings", account_id=self.organisation.account_id)
        return self.render_to_response(self.get_context_data(settings_form=form))

    def rename(self, request: HttpRequest) -> HttpResponse:
        form = TeamRenameForm(request.POST, current=self.organisation.team_name)
        if not self.can_rename():
            form.is_valid()
            form.add_error(None, "Only a Super Administrator can rename the team.")
        elif form.is_valid():
            old_domain = self.organisation.team_domain
            try:
                organisation = organisation_update(
                    organisation=self.organisation, actor=self.actor, team_name=form.cleaned_data["team_name"]
                )
            except (ValidationError, PermissionDenied) as exc:
                apply_service_error(form, exc)
            else:
                messages.success(
                    request,
                    f"The team is renamed: the team domain is now {organisation.team_domain} (was {old_domain}).",
                )
                return redirect("ui:settings", account_id=organisation.account_id)
        return self.render_to_response(self.get_context_data(rename_form=form))
