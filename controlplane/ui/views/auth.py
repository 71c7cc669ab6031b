"""Signing in and out: password, then the second factor when the user has one; password reset by email."""

from __future__ import annotations

import time
from typing import Any

import django_otp
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.generic import FormView, View

from controlplane.access import user_is_verified
from controlplane.actors import Actor, client_ip
from controlplane.models import Membership, User
from controlplane.services.auth import (
    AccountLocked,
    SignInError,
    second_factor_method,
    sign_in_complete,
    sign_in_password,
    sign_in_second_factor,
    sign_in_unlock,
    user_has_second_factor,
)
from controlplane.ui.forms import CodeForm, LoginForm, PasswordResetForm
from controlplane.ui.mixins import LAST_ORGANISATION_SESSION_KEY, UIView

PENDING_USER_KEY = "ui_pending_user"
PENDING_SINCE_KEY = "ui_pending_since"
PENDING_NEXT_KEY = "ui_pending_next"
# How long a correct password keeps the second-factor prompt open.
PENDING_LIFETIME_SECONDS = 5 * 60
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def safe_next(request: HttpRequest, value: str | None, default: str = "") -> str:
    """`value` when it is a path on this site, otherwise `default` (or the home page)."""
    if value and url_has_allowed_host_and_scheme(
        value, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return value
    return default or reverse("ui:home")


def _clear_pending(request: HttpRequest) -> None:
    for key in (PENDING_USER_KEY, PENDING_SINCE_KEY, PENDING_NEXT_KEY):
        request.session.pop(key, None)


def pending_user(request: HttpRequest) -> User | None:
    """The user who gave the right password in this session and still owes the second factor."""
    pk = request.session.get(PENDING_USER_KEY)
    since = request.session.get(PENDING_SINCE_KEY, 0)
    if pk is None:
        return None
    if time.time() - since > PENDING_LIFETIME_SECONDS:
        _clear_pending(request)
        return None
    return User.objects.filter(pk=pk, is_active=True).first()


def complete_sign_in(request: HttpRequest, user: User, *, device: Any = None) -> None:
    """Both factors passed (or no second one is set up): start the session and record the sign-in."""
    if not request.user.is_authenticated or request.user.pk != user.pk:
        login(request, user, backend=MODEL_BACKEND)
    _clear_pending(request)
    if device is not None:
        django_otp.login(request, device)
    method = second_factor_method(device) if device is not None else "password"
    sign_in_complete(user=user, actor=Actor.from_request(request), method=method)


class LoginView(UIView, FormView):
    template_name = "ui/auth/login.html"
    form_class = LoginForm

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.user.is_authenticated:
            return redirect(safe_next(request, request.GET.get("next")))
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["next"] = safe_next(self.request, self.request.GET.get("next") or self.request.POST.get("next"), "")
        return context

    def form_valid(self, form: LoginForm) -> HttpResponse:
        request = self.request
        try:
            user = sign_in_password(
                email=form.cleaned_data["email"], password=form.cleaned_data["password"], ip=client_ip(request)
            )
        except SignInError as exc:
            form.add_error(None, exc.message)
            return self.form_invalid(form)
        next_url = safe_next(request, request.POST.get("next") or request.GET.get("next"))
        if user_has_second_factor(user):
            if request.user.is_authenticated:
                logout(request)
            request.session.cycle_key()
            request.session[PENDING_USER_KEY] = user.pk
            request.session[PENDING_SINCE_KEY] = time.time()
            request.session[PENDING_NEXT_KEY] = next_url
            return redirect("ui:login-verify")
        complete_sign_in(request, user)
        return redirect(next_url)


class VerifyView(UIView, FormView):
    """The second factor: for a password-checked pending sign-in, or for a signed-in session that has not
    passed it yet (the authenticator was set up in another session)."""

    template_name = "ui/auth/verify.html"
    form_class = CodeForm

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self.user = None
        if request.user.is_authenticated:
            if user_is_verified(request.user) or not user_has_second_factor(request.user):  # type: ignore[arg-type]
                return redirect(safe_next(request, request.GET.get("next")))
            self.user = request.user
        else:
            self.user = pending_user(request)
        if self.user is None:
            messages.info(request, "Your sign-in took too long; enter your email and password again.")
            return redirect("ui:login")
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["verify_user"] = self.user
        return context

    def form_valid(self, form: CodeForm) -> HttpResponse:
        request = self.request
        assert self.user is not None
        try:
            device = sign_in_second_factor(user=self.user, code=form.cleaned_data["code"], ip=client_ip(request))
        except AccountLocked as exc:
            _clear_pending(request)
            if request.user.is_authenticated:
                logout(request)
            messages.error(request, exc.message)
            return redirect("ui:login")
        except SignInError as exc:
            form.add_error("code", exc.message)
            return self.form_invalid(form)
        next_url = request.session.get(PENDING_NEXT_KEY) or request.GET.get("next")
        complete_sign_in(request, self.user, device=device)  # type: ignore[arg-type]
        return redirect(safe_next(request, next_url))


class LogoutView(View):
    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        logout(request)
        messages.success(request, "You are signed out.")
        return redirect("ui:login")


class HomeView(View):
    """Anonymous → sign-in; otherwise the organisation used last, the first one, or the page to create one."""

    def get(self, request: HttpRequest) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect("ui:login")
        account_ids = [
            org_id.hex
            for org_id in Membership.objects.filter(user=request.user)
            .unscoped("the signed-in user's own memberships")
            .order_by("organisation__display_name", "organisation__team_name")
            .values_list("organisation_id", flat=True)
        ]
        if not account_ids:
            return redirect("ui:organisation-create")
        last = request.session.get(LAST_ORGANISATION_SESSION_KEY)
        return redirect("ui:overview", account_id=last if last in account_ids else account_ids[0])


class PasswordResetView(UIView, auth_views.PasswordResetView):
    template_name = "ui/auth/password_reset.html"
    form_class = PasswordResetForm
    success_url = reverse_lazy("ui:password-reset-done")

    def form_valid(self, form: Any) -> HttpResponse:
        from controlplane.actors import client_ip
        from controlplane.services.auth import password_reset_allowed

        if not password_reset_allowed(client_ip(self.request)):
            form.add_error(None, "Too many reset requests from your address. Try again in an hour.")
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().form_valid(form)


class PasswordResetDoneView(UIView, auth_views.PasswordResetDoneView):
    template_name = "ui/auth/password_reset_done.html"


class PasswordResetConfirmView(UIView, auth_views.PasswordResetConfirmView):
    template_name = "ui/auth/password_reset_confirm.html"
    success_url = reverse_lazy("ui:password-reset-complete")

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        sign_in_unlock(user=form.user)
        return response


class PasswordResetCompleteView(UIView, auth_views.PasswordResetCompleteView):
    template_name = "ui/auth/password_reset_complete.html"
