"""Base classes of every UI page. Like the API's `OrgScopedMixin`, the organisation and the member's scopes are
resolved in `dispatch()`, before any handler runs; non-members and missing ids both get the 404 page."""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlencode

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.forms import Form
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views import View

from controlplane.access import NotSignedIn, OrgAccess, SecondFactorRequired, resolve_org_access, user_is_verified
from controlplane.actors import Actor
from controlplane.choices import Level
from controlplane.errors import NotFound
from controlplane.models import Organisation
from controlplane.services.auth import user_has_second_factor, user_must_use_2fa

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
LAST_ORGANISATION_SESSION_KEY = "ui_last_organisation"


def second_factor_redirect(request: HttpRequest, *, next_url: str | None = None) -> HttpResponseRedirect | None:
    """Where a signed-in user must go first when one of their organisations requires 2FA and this session has
    not passed it: the code prompt if they have an authenticator, enrolment if not."""
    user = request.user
    if user_is_verified(user) or not user_must_use_2fa(user):  # type: ignore[arg-type]
        return None
    target = "ui:login-verify" if user_has_second_factor(user) else "ui:two-factor"  # type: ignore[arg-type]
    query = urlencode({"next": next_url or request.get_full_path()})
    return HttpResponseRedirect(f"{reverse(target)}?{query}")


def render_error(request: HttpRequest, status: int, message: str = "", **context: Any) -> HttpResponse:
    template = {403: "ui/errors/403.html", 404: "ui/errors/404.html"}[status]
    return render(request, template, {"message": message, **context}, status=status)


def apply_service_error(form: Form, exc: ValidationError | PermissionDenied, field_map: dict[str, str] | None = None):
    """Show a service's refusal on the form: per-field messages beside their field, the rest above the form."""
    field_map = field_map or {}
    if isinstance(exc, PermissionDenied):
        form.add_error(None, str(exc) or "You do not have permission to do this.")
        return
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            name = field_map.get(field, field)
            form.add_error(name if name in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


class UIView(View):
    """Turns 404 and 403 into the UI's pages (never Django's bare ones, never a 500)."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().dispatch(request, *args, **kwargs)
        except Http404 as exc:
            return self.error_page(404, str(exc) if isinstance(exc, NotFound) else "")
        except PermissionDenied as exc:
            return self.error_page(403, str(exc))

    def error_page(self, status: int, message: str) -> HttpResponse:
        # The organisation is only known (and shown) once access to it was resolved.
        organisation = getattr(self, "organisation", None)
        return render_error(self.request, status, message, organisation=organisation, nav_section="")

    @property
    def actor(self) -> Actor:
        return Actor.from_request(self.request)


class SignedInMixin(UIView):
    """Signed-in users only, and only after the second factor where one of their organisations requires it.
    `resolve_access()` runs before any handler; subclasses resolve what the URL names there."""

    enforce_second_factor: ClassVar[bool] = True

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if self.enforce_second_factor:
            redirect = second_factor_redirect(request)
            if redirect is not None:
                return redirect
        try:
            self.resolve_access(request, **kwargs)
        except NotSignedIn:
            return redirect_to_login(request.get_full_path())
        except SecondFactorRequired:
            return second_factor_redirect(request) or redirect_to_login(request.get_full_path())
        except Http404 as exc:
            return self.error_page(404, str(exc) if isinstance(exc, NotFound) else "")
        except PermissionDenied as exc:
            return self.error_page(403, str(exc))
        return super().dispatch(request, *args, **kwargs)

    def resolve_access(self, request: HttpRequest, **kwargs: Any) -> None:
        pass


class OrgRequiredMixin(SignedInMixin):
    """Resolve `account_id` into `self.organisation` and `self.access` and check `<resource>:read` for safe
    methods, `<resource>:edit` otherwise (403 page for members without it; 404 page for non-members)."""

    resource: ClassVar[str]
    nav: ClassVar[str] = ""
    account_kwarg: ClassVar[str] = "account_id"
    organisation: Organisation
    access: OrgAccess

    def resolve_access(self, request: HttpRequest, **kwargs: Any) -> None:
        self.access = resolve_org_access(user=request.user, token=None, account_id=kwargs.get(self.account_kwarg))
        self.organisation = self.access.organisation
        resource, level = self.required_scope(request)
        self.access.require(resource, level)
        # Written only when it changes: a write marks the session modified, and Django then saves it (a transaction
        # and an UPDATE) and sends its cookie again on every page (issue 13).
        if request.session.get(LAST_ORGANISATION_SESSION_KEY) != self.organisation.account_id:
            request.session[LAST_ORGANISATION_SESSION_KEY] = self.organisation.account_id

    def required_scope(self, request: HttpRequest) -> tuple[str, str]:
        return self.resource, (Level.READ if request.method in SAFE_METHODS else Level.EDIT)

    def get_org_object(self, model: type[models.Model], value: Any, **filters: Any) -> Any:
        """This organisation's row with primary key `value`; the 404 page for anything else."""
        try:
            pk = model._meta.pk.to_python(value)  # type: ignore[union-attr]
            if isinstance(pk, int) and not 0 < pk < 2**63:
                raise ValidationError("out of range")
        except ValidationError:
            raise NotFound("No such item in this organisation.") from None
        obj = model.objects.for_org(self.organisation).filter(pk=pk, **filters).first()  # type: ignore[attr-defined]
        if obj is None:
            raise NotFound("No such item in this organisation.")
        return obj

    def org_url(self, name: str, *args: Any) -> str:
        return reverse(name, args=[self.organisation.account_id, *args])

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)  # type: ignore[misc]
        context.update(organisation=self.organisation, access=self.access, nav_section=self.nav)
        return context
