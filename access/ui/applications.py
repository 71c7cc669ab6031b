"""Applications: the list, the add / edit wizard, delete and "revoke existing tokens"."""

from __future__ import annotations

import re
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse

from access import selectors
from access.forms import ApplicationForm
from access.models import Application
from access.services.applications import application_delete, application_revoke_tokens
from access.services.wizard import application_save_with_policy
from access.ui.base import AccessPage, DeleteView, show_service_error
from controlplane.choices import ZoneStatus
from controlplane.models import Zone

_DESTINATION = re.compile(r"^destinations\[(\d+)\]: (.*)$", re.S)


class ApplicationListView(AccessPage):
    template_name = "access/ui/applications.html"
    tab = "applications"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        apps = list(selectors.application_list(organisation=self.organisation))
        context["apps"] = [{"app": app, "policies": [link.policy for link in app.policy_links.all()]} for app in apps]
        context["has_zones"] = Zone.objects.for_org(self.organisation).filter(status=ZoneStatus.ACTIVE).exists()
        return context


class ApplicationFormView(AccessPage):
    """Add (no app_id) or edit one self-hosted application."""

    template_name = "access/ui/application_form.html"
    tab = "applications"

    def app(self, **kwargs: Any) -> Application | None:
        if "app_id" not in kwargs:
            return None
        return selectors.application_get(organisation=self.organisation, app_id=kwargs["app_id"])

    def make_form(self, app: Application | None, data: Any = None) -> ApplicationForm:
        org = self.organisation
        zones = list(Zone.objects.for_org(org).filter(status=ZoneStatus.ACTIVE).values_list("name", flat=True))
        attached = [link.policy for link in app.policy_links.all()] if app is not None else []
        attached_ids = {p.pk for p in attached}
        choices = [(str(p.pk), self._policy_label(p)) for p in attached]
        choices += [
            (str(p.pk), self._policy_label(p))
            for p in selectors.policy_list(organisation=org)
            if p.pk not in attached_ids
        ]
        idps = [(str(idp.pk), idp.name) for idp in selectors.identity_provider_list(organisation=org)]
        return ApplicationForm(
            data,
            zones=zones,
            idps=idps,
            policies=choices,
            directory=self.directory(),
            app=app,
            attached=[str(p.pk) for p in attached],
        )

    @staticmethod
    def _policy_label(policy: Any) -> str:
        scope = "reusable" if policy.reusable else "this application only"
        return f"{policy.name} · {policy.get_decision_display()} ({scope})"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        app = self.app(**kwargs)
        form = kwargs.get("form") or self.make_form(app)
        context.update(app=app, form=form, zones=form.zones, reference_names=form.reference_names())
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        app = self.app(**kwargs)
        form = self.make_form(app, request.POST)
        if form.is_valid():
            try:
                saved = application_save_with_policy(
                    organisation=self.organisation,
                    actor=self.actor,
                    data=form.service_data(),
                    app=app,
                    new_policy=form.cleaned_data["new_policy"],
                )
            except (ValidationError, PermissionDenied) as exc:
                rows = form.destination_rows_used

                def destination_field(message: str) -> tuple[str, str]:
                    match = _DESTINATION.match(message)
                    if match and int(match.group(1)) < len(rows):
                        return f"dest_{rows[int(match.group(1))]}_subdomain", match.group(2)
                    return "dest_0_subdomain", message

                show_service_error(
                    form,
                    exc,
                    {
                        "destinations": destination_field,
                        "domain": "dest_0_subdomain",
                        "self_hosted_domains": "dest_0_subdomain",
                        "allowed_idps": "idps",
                        "policy_name": "policy_name",
                        "policy_decision": "decision",
                        "policy_session_duration": "policy_session_duration",
                        "policy_policies": "policies",
                    },
                )
            else:
                verb = "saved" if app is not None else "added"
                messages.success(request, f"Application “{saved.name}” {verb}.")
                return self.to("ui:access-app", saved.pk.hex)
        return self.render_to_response(self.get_context_data(form=form, **kwargs))


class ApplicationDetailView(AccessPage):
    template_name = "access/ui/application.html"
    tab = "applications"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        app = selectors.application_get(organisation=self.organisation, app_id=kwargs["app_id"])
        directory = self.directory()
        context.update(
            app=app,
            links=list(app.policy_links.all()),
            idp_names=[directory.name("login_method", idp) for idp in app.allowed_idps],
            team_domain=self.organisation.team_domain,
            directory=directory,
        )
        return context


class ApplicationRevokeView(AccessPage):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        app = selectors.application_get(organisation=self.organisation, app_id=kwargs["app_id"])
        application_revoke_tokens(app=app, actor=self.actor)
        messages.success(request, f"Every session of “{app.name}” issued until now is revoked: people sign in again.")
        return self.to("ui:access-app", app.pk.hex)


class ApplicationDeleteView(DeleteView):
    what = "application"
    back = "ui:access"
    tab = "applications"

    def get_object(self, **kwargs: Any) -> Application:
        return selectors.application_get(organisation=self.organisation, app_id=kwargs["app_id"])

    def consequence(self, obj: Application) -> str:
        return (
            "Its domains stop being protected by Access at once: requests to them go straight to the origin. "
            "Its own policies are deleted; reusable policies stay."
        )

    def delete(self, obj: Application) -> None:
        application_delete(app=obj, actor=self.actor)
