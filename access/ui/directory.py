"""Reusable policies, Access groups, email / IP lists and service tokens."""

from __future__ import annotations

from typing import Any, ClassVar

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from access import selectors
from access.forms import AccessListForm, GroupForm, PolicyForm, ServiceTokenForm
from access.services.directory import (
    group_delete,
    group_save,
    list_delete,
    list_save,
    service_token_create,
    service_token_delete,
    service_token_refresh,
    service_token_rotate,
)
from access.services.policies import policy_delete, policy_save
from access.ui.base import AccessPage, DeleteView, show_service_error

NEW_SECRET_SESSION_KEY = "ui_new_service_token_secret:{}"


class ListPage(AccessPage):
    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["rows"] = self.rows()
        context["directory"] = self.directory()
        return context

    def rows(self) -> list[Any]:
        raise NotImplementedError


class EditPage(AccessPage):
    """Create (no id in the URL) or edit one object through a form and a service."""

    template_name = "access/ui/edit.html"
    id_kwarg: ClassVar[str] = ""
    what: ClassVar[str] = ""
    back: ClassVar[str] = ""

    def get_object(self, **kwargs: Any) -> Any:
        raise NotImplementedError

    def make_form(self, obj: Any, data: Any = None) -> forms.Form:
        raise NotImplementedError

    def save(self, form: Any, obj: Any) -> Any:
        raise NotImplementedError

    def back_url(self, **kwargs: Any) -> str:
        return self.org_url(self.back)

    def obj(self, **kwargs: Any) -> Any:
        return self.get_object(**kwargs) if self.id_kwarg in kwargs else None

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        obj = self.obj(**kwargs)
        form = kwargs.get("form") or self.make_form(obj)
        context.update(obj=obj, form=form, what=self.what, back_url=self.back_url(**kwargs))
        if hasattr(form, "reference_names"):
            context["reference_names"] = form.reference_names()
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        obj = self.obj(**kwargs)
        form = self.make_form(obj, request.POST)
        if form.is_valid():
            try:
                saved = self.save(form, obj)
            except (ValidationError, PermissionDenied) as exc:
                show_service_error(form, exc, {})
            else:
                messages.success(request, f"{self.what.capitalize()} “{saved.name}” saved.")
                return redirect(self.back_url(**kwargs))
        return self.render_to_response(self.get_context_data(form=form, **kwargs))


# --- policies ------------------------------------------------------------------------------------------------------


class PolicyListView(ListPage):
    template_name = "access/ui/policies.html"
    tab = "policies"

    def rows(self) -> list[Any]:
        return list(selectors.policy_list(organisation=self.organisation))


class PolicyEditView(EditPage):
    tab = "policies"
    id_kwarg = "policy_id"
    what = "policy"
    back = "ui:access-policies"

    def get_object(self, **kwargs: Any) -> Any:
        return selectors.policy_get(organisation=self.organisation, policy_id=kwargs["policy_id"])

    def make_form(self, obj: Any, data: Any = None) -> forms.Form:
        return PolicyForm(data, directory=self.directory(), policy=obj)

    def save(self, form: Any, obj: Any) -> Any:
        return policy_save(organisation=self.organisation, actor=self.actor, data=form.service_data(), policy=obj)


class ApplicationPolicyEditView(EditPage):
    """One policy as attached to one application (its own, or a reusable one: then every application using it
    changes, which the page says)."""

    tab = "applications"
    id_kwarg = "policy_id"
    what = "policy"

    def application(self, **kwargs: Any) -> Any:
        return selectors.application_get(organisation=self.organisation, app_id=kwargs["app_id"])

    def get_object(self, **kwargs: Any) -> Any:
        return selectors.policy_get(
            organisation=self.organisation, policy_id=kwargs["policy_id"], application=self.application(**kwargs)
        )

    def back_url(self, **kwargs: Any) -> str:
        return self.org_url("ui:access-app", self.application(**kwargs).pk.hex)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["application"] = self.application(**kwargs)
        return context

    def make_form(self, obj: Any, data: Any = None) -> forms.Form:
        return PolicyForm(data, directory=self.directory(), policy=obj)

    def save(self, form: Any, obj: Any) -> Any:
        return policy_save(
            organisation=self.organisation,
            actor=self.actor,
            data=form.service_data(),
            policy=obj,
            application=None if obj.reusable else obj.application,
        )


class PolicyDeleteView(DeleteView):
    tab = "policies"
    what = "policy"
    back = "ui:access-policies"

    def get_object(self, **kwargs: Any) -> Any:
        return selectors.policy_get(organisation=self.organisation, policy_id=kwargs["policy_id"])

    def delete(self, obj: Any) -> None:
        policy_delete(policy=obj, actor=self.actor)


# --- groups --------------------------------------------------------------------------------------------------------


class GroupListView(ListPage):
    template_name = "access/ui/groups.html"
    tab = "groups"

    def rows(self) -> list[Any]:
        return list(selectors.group_list(organisation=self.organisation))


class GroupEditView(EditPage):
    tab = "groups"
    id_kwarg = "group_id"
    what = "group"
    back = "ui:access-groups"

    def get_object(self, **kwargs: Any) -> Any:
        return selectors.group_get(organisation=self.organisation, group_id=kwargs["group_id"])

    def make_form(self, obj: Any, data: Any = None) -> forms.Form:
        return GroupForm(data, directory=self.directory(), group=obj)

    def save(self, form: Any, obj: Any) -> Any:
        return group_save(organisation=self.organisation, actor=self.actor, data=form.service_data(), group=obj)


class GroupDeleteView(DeleteView):
    tab = "groups"
    what = "group"
    back = "ui:access-groups"

    def get_object(self, **kwargs: Any) -> Any:
        return selectors.group_get(organisation=self.organisation, group_id=kwargs["group_id"])

    def delete(self, obj: Any) -> None:
        group_delete(group=obj, actor=self.actor)


# --- lists ---------------------------------------------------------------------------------------------------------


class ListListView(ListPage):
    template_name = "access/ui/lists.html"
    tab = "lists"

    def rows(self) -> list[Any]:
        return list(selectors.list_list(organisation=self.organisation))


class ListEditView(EditPage):
    tab = "lists"
    id_kwarg = "list_id"
    what = "list"
    back = "ui:access-lists"

    def get_object(self, **kwargs: Any) -> Any:
        return selectors.list_get(organisation=self.organisation, list_id=kwargs["list_id"])

    def make_form(self, obj: Any, data: Any = None) -> forms.Form:
        return AccessListForm(data, access_list=obj)

    def save(self, form: Any, obj: Any) -> Any:
        return list_save(organisation=self.organisation, actor=self.actor, data=form.service_data(), access_list=obj)


class ListDeleteView(DeleteView):
    tab = "lists"
    what = "list"
    back = "ui:access-lists"

    def get_object(self, **kwargs: Any) -> Any:
        return selectors.list_get(organisation=self.organisation, list_id=kwargs["list_id"])

    def delete(self, obj: Any) -> None:
        list_delete(access_list=obj, actor=self.actor)


# --- service tokens ------------------------------------------------------------------------------------------------


class ServiceTokenListView(ListPage):
    template_name = "access/ui/service_tokens.html"
    tab = "tokens"

    def rows(self) -> list[Any]:
        return list(selectors.service_token_list(organisation=self.organisation))

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.setdefault("form", kwargs.get("form") or ServiceTokenForm())
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = ServiceTokenForm(request.POST)
        if form.is_valid():
            try:
                token, secret = service_token_create(
                    organisation=self.organisation, actor=self.actor, data=form.cleaned_data
                )
            except ValidationError as exc:
                show_service_error(form, exc, {})
            else:
                request.session[NEW_SECRET_SESSION_KEY.format(token.pk.hex)] = secret
                return self.to("ui:access-service-token-created", token.pk.hex)
        return self.render_to_response(self.get_context_data(form=form))


class ServiceTokenCreatedView(AccessPage):
    """Shows a new (or rotated) client secret exactly once: it leaves the session as the page renders."""

    template_name = "access/ui/service_token_created.html"
    tab = "tokens"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        token = selectors.service_token_get(organisation=self.organisation, token_id=kwargs["service_token_id"])
        secret = self.request.session.pop(NEW_SECRET_SESSION_KEY.format(token.pk.hex), None)
        context.update(token=token, secret=secret)
        return context


class ServiceTokenActionView(AccessPage):
    """POST rotate (a new secret, shown once) or refresh (extend its life by its duration)."""

    http_method_names = ["post"]
    action: ClassVar[str] = ""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        token = selectors.service_token_get(organisation=self.organisation, token_id=kwargs["service_token_id"])
        if self.action == "rotate":
            token, secret = service_token_rotate(token=token, actor=self.actor)
            request.session[NEW_SECRET_SESSION_KEY.format(token.pk.hex)] = secret
            return self.to("ui:access-service-token-created", token.pk.hex)
        token = service_token_refresh(token=token, actor=self.actor)
        expiry = f"until {token.expires_at:%d %b %Y %H:%M} UTC" if token.expires_at else "without an end"
        messages.success(request, f"Service token “{token.name}” now works {expiry}.")
        return self.to("ui:access-service-tokens")


class ServiceTokenDeleteView(DeleteView):
    tab = "tokens"
    what = "service token"
    back = "ui:access-service-tokens"

    def get_object(self, **kwargs: Any) -> Any:
        return selectors.service_token_get(organisation=self.organisation, token_id=kwargs["service_token_id"])

    def consequence(self, obj: Any) -> str:
        return "Machines using it are refused from now on."

    def delete(self, obj: Any) -> None:
        service_token_delete(token=obj, actor=self.actor)
