"""What every Access page shares: the `access` permission, the section tabs, the organisation's directory of names
for the rule builder, and how a service's refusal is shown beside the field it is about."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.generic import TemplateView

from access import selectors
from access.forms import ConfirmForm, RuleNames
from controlplane.actors import Actor
from controlplane.choices import Level, Resource
from controlplane.ui.mixins import OrgRequiredMixin

TABS = [
    ("applications", "ui:access", "Applications"),
    ("policies", "ui:access-policies", "Policies"),
    ("groups", "ui:access-groups", "Groups"),
    ("lists", "ui:access-lists", "Lists"),
    ("tokens", "ui:access-service-tokens", "Service tokens"),
    ("tester", "ui:access-tester", "Policy tester"),
    ("logs", "ui:access-logs", "Access log"),
    ("settings", "ui:access-settings", "Settings"),
]
_POSITION = re.compile(r"^(?:destinations|items|include|require|exclude|policies)\[(\d+)\]: ")


class AccessPage(OrgRequiredMixin, TemplateView):
    resource = Resource.ACCESS
    nav = "access"
    tab: ClassVar[str] = ""

    @property
    def can_edit(self) -> bool:
        return self.access.can(Resource.ACCESS, Level.EDIT)

    @property
    def actor(self) -> Actor:
        return Actor.from_request(self.request, interface="ui")

    def directory(self) -> RuleNames:
        org = self.organisation
        return RuleNames(
            groups=selectors.group_list(organisation=org),
            lists=selectors.list_list(organisation=org),
            tokens=selectors.service_token_list(organisation=org),
            idps=selectors.identity_provider_list(organisation=org),
        )

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["can_edit"] = self.can_edit
        context["tabs"] = [(key, url, label, key == self.tab) for key, url, label in TABS]
        return context

    def to(self, name: str, *args: Any) -> HttpResponse:
        return redirect(self.org_url(name, *args))


def show_service_error(form: forms.Form, exc: ValidationError | PermissionDenied, field_map: dict[str, str]) -> None:
    """Put each message beside its field (`field_map`: service key → form field, or a callable choosing the field
    from the message), rule errors above their rule-builder section, the rest above the form."""
    if isinstance(exc, PermissionDenied) or not hasattr(exc, "error_dict"):
        form.add_error(None, exc.messages if isinstance(exc, ValidationError) else (str(exc) or "Not allowed."))
        return
    for key, errors in exc.message_dict.items():
        for message in errors:
            target = field_map.get(key, key)
            if callable(target):
                target, message = target(message)
            section = target.removeprefix("policy_")
            if section in ("include", "require", "exclude") and hasattr(form, "section_errors"):
                form.section_errors.setdefault(section, []).append(_POSITION.sub("", message))
                form.add_error(None, "Some rules need your attention: see the messages beside them.")
                continue
            form.add_error(target if target in form.fields else None, _POSITION.sub("", message))


class DeleteView(AccessPage):
    """GET: a page asking to confirm; POST: the delete. Works without JavaScript."""

    template_name = "access/ui/confirm_delete.html"
    what: ClassVar[str] = ""
    back: ClassVar[str] = ""

    def get_object(self, **kwargs: Any) -> Any:
        raise NotImplementedError

    def delete(self, obj: Any) -> None:
        raise NotImplementedError

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        obj = self.get_object(**kwargs)
        context.update(obj=obj, what=self.what, back_url=self.org_url(self.back), form=ConfirmForm())
        context["consequence"] = self.consequence(obj)
        return context

    def consequence(self, obj: Any) -> str:
        return ""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        obj = self.get_object(**kwargs)
        try:
            self.delete(obj)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return self.to(self.back)
        messages.success(request, f"{self.what.capitalize()} “{obj.name}” deleted.")
        return self.to(self.back)
