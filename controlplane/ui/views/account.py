"""The signed-in person's own account: two-factor authentication (enrol, backup codes, remove) and password."""

from __future__ import annotations

from base64 import b32encode
from typing import Any
from urllib.parse import urlencode

import django_otp
import segno
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse, reverse_lazy
from django.utils.safestring import mark_safe
from django.views.generic import FormView, TemplateView

from controlplane.access import user_is_verified
from controlplane.choices import Role
from controlplane.models import Membership
from controlplane.services.auth import (
    SignInError,
    backup_codes_regenerate,
    organisations_requiring_2fa,
    totp_confirm,
    totp_enrolment_device,
    two_factor_disable,
    two_factor_status,
    user_has_second_factor,
)
from controlplane.ui.forms import CodeForm, ConfirmCodeForm
from controlplane.ui.mixins import SignedInMixin, apply_service_error
from controlplane.ui.views.auth import safe_next

BACKUP_CODES_SESSION_KEY = "ui_backup_codes"


def format_secret(secret: str) -> str:
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def format_backup_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


class VerifiedSessionMixin(SignedInMixin):
    """Pages that change the second factor need a session that has passed it (when the user has one)."""

    enforce_second_factor = False

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user: Any = request.user
        if user.is_authenticated and not user_is_verified(user) and user_has_second_factor(user):
            return redirect(f"{reverse('ui:login-verify')}?{urlencode({'next': request.get_full_path()})}")
        return super().dispatch(request, *args, **kwargs)


class AccountView(SignedInMixin, TemplateView):
    template_name = "ui/account/index.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        memberships = (
            Membership.objects.filter(user=self.request.user)
            .unscoped("the signed-in user's own memberships")
            .select_related("organisation")
        )
        context.update(
            two_factor=two_factor_status(self.request.user),  # type: ignore[arg-type]
            memberships=[(m, Role(m.role).label) for m in memberships],
            nav_section="account",
        )
        return context


class TwoFactorView(VerifiedSessionMixin, FormView):
    """Enrolment (QR code + the secret as text, confirmed by a code) or, once on, its status and controls."""

    template_name = "ui/account/two_factor.html"
    form_class = ConfirmCodeForm

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        user = self.request.user
        status = two_factor_status(user)  # type: ignore[arg-type]
        context.update(status=status, requiring=organisations_requiring_2fa(user), nav_section="account")  # type: ignore[arg-type]
        context["next"] = safe_next(self.request, self.request.GET.get("next"), "")
        if status.enabled:
            context["remove_form"] = kwargs.get("remove_form") or CodeForm(prefix="remove")
        else:
            device = totp_enrolment_device(user=user)  # type: ignore[arg-type]
            secret = b32encode(device.bin_key).decode()
            qr = segno.make(device.config_url, error="m")
            context.update(
                secret=secret,
                secret_grouped=format_secret(secret),
                qr_svg=mark_safe(qr.svg_inline(scale=5, border=2, dark="#111827", light="#ffffff")),  # noqa: S308
                otpauth_url=device.config_url,
            )
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if user_has_second_factor(request.user):  # type: ignore[arg-type]
            messages.info(request, "Two-factor authentication is already on.")
            return redirect("ui:two-factor")
        return super().post(request, *args, **kwargs)

    def form_valid(self, form: ConfirmCodeForm) -> HttpResponse:
        request = self.request
        device = totp_enrolment_device(user=request.user)  # type: ignore[arg-type]
        try:
            codes = totp_confirm(user=request.user, device=device, code=form.cleaned_data["code"], actor=self.actor)  # type: ignore[arg-type]
        except SignInError as exc:
            form.add_error("code", exc.message)
            return self.form_invalid(form)
        device.refresh_from_db()
        django_otp.login(request, device)
        request.session[BACKUP_CODES_SESSION_KEY] = codes
        messages.success(request, "Two-factor authentication is on. Save your backup codes now.")
        next_url = safe_next(request, request.POST.get("next"), "")
        query = f"?{urlencode({'next': next_url})}" if next_url else ""
        return redirect(reverse("ui:backup-codes") + query)


class BackupCodesView(VerifiedSessionMixin, TemplateView):
    """Fresh backup codes are shown once, right after they are made; afterwards only how many are left."""

    template_name = "ui/account/backup_codes.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not user_has_second_factor(request.user):  # type: ignore[arg-type]
            return redirect("ui:two-factor")
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        codes = self.request.session.pop(BACKUP_CODES_SESSION_KEY, None)
        context.update(
            codes=[format_backup_code(code) for code in codes] if codes else None,
            status=two_factor_status(self.request.user),  # type: ignore[arg-type]
            next=safe_next(self.request, self.request.GET.get("next"), ""),
            nav_section="account",
        )
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            codes = backup_codes_regenerate(user=request.user, actor=self.actor)  # type: ignore[arg-type]
        except PermissionDenied as exc:
            messages.error(request, str(exc))
            return redirect("ui:two-factor")
        request.session[BACKUP_CODES_SESSION_KEY] = codes
        messages.success(request, "New backup codes made; the old ones no longer work.")
        return redirect("ui:backup-codes")


class TwoFactorRemoveView(TwoFactorView):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = CodeForm(request.POST, prefix="remove")
        if form.is_valid():
            try:
                two_factor_disable(user=request.user, code=form.cleaned_data["code"], actor=self.actor)  # type: ignore[arg-type]
            except SignInError as exc:
                form.add_error("code", exc.message)
            except PermissionDenied as exc:
                apply_service_error(form, exc)
            else:
                messages.success(request, "Two-factor authentication is off. Your backup codes no longer work.")
                return redirect("ui:account")
        return self.render_to_response(self.get_context_data(remove_form=form))


class PasswordChangeView(SignedInMixin, auth_views.PasswordChangeView):
    template_name = "ui/account/password_change.html"
    success_url = reverse_lazy("ui:account")

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        messages.success(self.request, "Your password is changed. Other sessions were signed out.")
        return response

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["nav_section"] = "account"
        return context
