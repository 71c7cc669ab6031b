"""The policy tester, the access log and the organisation's Access settings."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse

from access import selectors
from access.forms import GlobalSessionForm, KeyIntervalForm, LogFilterForm, LoginDesignForm, RevokeUserForm, TesterForm
from access.services.settings import (
    access_settings,
    access_settings_update,
    keys_rotate,
    keys_status,
    keys_update,
    user_revoke,
)
from access.ui.base import AccessPage, show_service_error

LOG_PAGE_SIZE = 50
OUTCOME_BADGES = {
    "allow": ("Allow", "badge-green"),
    "service_auth": ("Service Auth", "badge-green"),
    "bypass": ("Bypass", "badge-blue"),
    "deny": ("Block", "badge-red"),
    "no_match": ("Block (no policy matched)", "badge-red"),
    "needs_login": ("Login required", "badge-amber"),
}


def _design_field(message: str) -> tuple[str, str]:
    """The settings service says "background_color: a colour such as …": put it beside that field."""
    key, sep, rest = message.partition(": ")
    return (key, rest) if sep and key in LoginDesignForm.base_fields else ("__all__", message)


class PolicyTesterView(AccessPage):
    """A GET form: the results are a link that can be shared and reloaded."""

    template_name = "access/ui/tester.html"
    tab = "tester"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        submitted = any(key in self.request.GET for key in TesterForm.base_fields)
        tokens = [(str(token.pk), token.name) for token in selectors.service_token_list(organisation=self.organisation)]
        form = TesterForm(self.request.GET if submitted else None, tokens=tokens)
        results = None
        if submitted and form.is_valid():
            try:
                results = selectors.policy_test(organisation=self.organisation, data=form.cleaned_data)
            except ValidationError as exc:
                show_service_error(form, exc, {})
            else:
                for row in results:
                    row["label"], row["badge"] = OUTCOME_BADGES.get(row["outcome"], (row["outcome"], "badge-grey"))
        context.update(form=form, results=results, submitted=submitted)
        return context


class AccessLogView(AccessPage):
    template_name = "access/ui/logs.html"
    tab = "logs"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        apps = list(selectors.application_list(organisation=self.organisation))
        form = LogFilterForm(self.request.GET or None, apps=[(str(app.pk), app.name) for app in apps])
        filters: dict[str, Any] = {}
        if form.is_valid():
            data = form.cleaned_data
            filters = {
                "email": data.get("email") or None,
                "app_uid": data.get("app") or None,
                "allowed": {"yes": True, "no": False}.get(data.get("allowed") or ""),
            }
        rows = selectors.access_request_list(organisation=self.organisation, **filters)
        page = Paginator(rows, LOG_PAGE_SIZE).get_page(self.request.GET.get("page"))
        names = {str(app.pk): app.name for app in apps}
        for row in page.object_list:
            row.app_name = names.get(row.app_uid, "")
        query = {k: v for k, v in (form.cleaned_data if form.is_bound and form.is_valid() else {}).items() if v}
        context.update(form=form, page=page, filter_query=urlencode(query), filtered=bool(query))
        return context


class AccessSettingsView(AccessPage):
    """One page, several small forms: each POST names which one it is (`form`)."""

    template_name = "access/ui/settings.html"
    tab = "settings"

    def forms(self, bound: str = "", data: Any = None) -> dict[str, Any]:
        row = access_settings(self.organisation)
        return {
            "session": GlobalSessionForm(
                data if bound == "session" else None, current=row.session_duration, prefix="session"
            ),
            "design": LoginDesignForm(
                data if bound == "design" else None, initial=row.login_design or {}, prefix="design"
            ),
            "keys": KeyIntervalForm(
                data if bound == "keys" else None,
                initial={"key_rotation_interval_days": row.key_rotation_interval_days},
                prefix="keys",
            ),
            "revoke": RevokeUserForm(data if bound == "revoke" else None, prefix="revoke"),
        }

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        forms = kwargs.get("forms") or self.forms()
        context.update(
            forms=forms,
            team_domain=self.organisation.team_domain,
            keys=keys_status(self.organisation),
            design=access_settings(self.organisation).login_design or {},
        )
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        which = request.POST.get("form", "")
        org, actor = self.organisation, self.actor
        if which == "rotate":
            key = keys_rotate(organisation=org, actor=actor)
            messages.success(
                request, f"New signing key {key.kid} in use. The previous key still verifies tokens for 7 days."
            )
            return self.to("ui:access-settings")
        forms = self.forms(which, request.POST)
        form = forms.get(which)
        if form is None:
            messages.error(request, "Unknown form.")
            return self.to("ui:access-settings")
        if form.is_valid():
            data = form.cleaned_data
            try:
                if which == "session":
                    access_settings_update(organisation=org, actor=actor, data=data)
                    done = "Global session duration saved."
                elif which == "design":
                    access_settings_update(organisation=org, actor=actor, data={"login_design": form.service_data()})
                    done = "Login page design saved."
                elif which == "keys":
                    keys_update(organisation=org, actor=actor, days=data["key_rotation_interval_days"])
                    done = "Key rotation interval saved."
                else:
                    user_revoke(organisation=org, actor=actor, email=data["email"])
                    done = f"Sessions of {data['email']} revoked: they must sign in again."
            except ValidationError as exc:
                show_service_error(form, exc, {"login_design": _design_field})
            else:
                messages.success(request, done)
                return self.to("ui:access-settings")
        return self.render_to_response(self.get_context_data(forms=forms))
