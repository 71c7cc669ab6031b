"""API tokens: list, create with a permission matrix (the secret is shown once), revoke."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.generic import FormView, TemplateView

from controlplane.choices import TOKEN_RESOURCES, Level, Resource
from controlplane.models import ApiToken
from controlplane.services.tokens import api_token_create, api_token_revoke
from controlplane.ui.forms import ApiTokenForm
from controlplane.ui.mixins import OrgRequiredMixin, apply_service_error

NEW_SECRET_SESSION_KEY = "ui_new_token_secret:{}"
STATUS_LABELS = {"active": "Active", "expired": "Expired", "disabled": "Revoked"}


def describe_grants(grants: dict[str, str]) -> list[tuple[str, str]]:
    labels = {resource.value: resource.label for resource in TOKEN_RESOURCES}
    return [(labels.get(resource, resource), Level(level).label) for resource, level in sorted(grants.items())]


class TokenListView(OrgRequiredMixin, TemplateView):
    resource = Resource.TOKENS
    nav = "tokens"
    template_name = "ui/tokens/list.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        tokens = ApiToken.objects.for_org(self.organisation).select_related("created_by")
        rows = []
        for token in tokens:
            status = token.status
            if status == "disabled" and token.revoked_at is None:
                label = "Not yet valid"
            else:
                label = STATUS_LABELS[status]
            rows.append(
                {"token": token, "status": status, "status_label": label, "grants": describe_grants(token.grants)}
            )
        context.update(rows=rows, can_edit=self.access.can(Resource.TOKENS, Level.EDIT))
        return context


class TokenCreateView(OrgRequiredMixin, FormView):
    resource = Resource.TOKENS
    nav = "tokens"
    template_name = "ui/tokens/create.html"
    form_class = ApiTokenForm

    def required_scope(self, request: HttpRequest) -> tuple[str, str]:
        return Resource.TOKENS, Level.EDIT  # the form too: it is only for those who can create

    def get_form_kwargs(self) -> dict[str, Any]:
        kwargs = super().get_form_kwargs()
        kwargs["scopes"] = self.access.scopes
        return kwargs

    def form_valid(self, form: ApiTokenForm) -> HttpResponse:
        try:
            token, raw = api_token_create(
                organisation=self.organisation,
                name=form.cleaned_data["name"],
                grants=form.grants(),
                allowed_networks=form.cleaned_data["allowed_networks"],
                expires_at=form.expires_at(),
                actor=self.actor,
            )
        except (ValidationError, PermissionDenied) as exc:
            apply_service_error(form, exc)
            return self.form_invalid(form)
        self.request.session[NEW_SECRET_SESSION_KEY.format(token.id.hex)] = raw
        return redirect("ui:token-created", account_id=self.organisation.account_id, token_id=token.id.hex)


class TokenCreatedView(OrgRequiredMixin, TemplateView):
    """Shows the new token's secret exactly once: it is taken out of the session as the page renders."""

    resource = Resource.TOKENS
    nav = "tokens"
    template_name = "ui/tokens/created.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        token = self.get_org_object(ApiToken, kwargs["token_id"])
        context.update(
            token=token,
            secret=self.request.session.pop(NEW_SECRET_SESSION_KEY.format(token.id.hex), None),
            grants=describe_grants(token.grants),
        )
        return context


class TokenRevokeView(OrgRequiredMixin, TemplateView):
    resource = Resource.TOKENS
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        token = self.get_org_object(ApiToken, kwargs["token_id"])
        if token.revoked_at is not None:
            messages.info(request, f"The token “{token.name}” was already revoked.")
        else:
            api_token_revoke(token=token, actor=self.actor)
            messages.success(request, f"The token “{token.name}” is revoked; calls using it now fail.")
        return redirect("ui:tokens", account_id=self.organisation.account_id)
