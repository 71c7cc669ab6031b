"""Members and invitations of an organisation, and the invitation link an invitee opens."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.generic import TemplateView
from django_otp.plugins.otp_totp.models import TOTPDevice

from controlplane.actors import Actor
from controlplane.choices import ROLE_DESCRIPTIONS, InvitationStatus, Resource, Role, role_description
from controlplane.models import Invitation, Membership, User
from controlplane.services.members import (
    invitation_accept,
    invitation_create,
    invitation_decline,
    invitation_get_by_secret,
    invitation_revoke,
    membership_remove,
    membership_update_role,
)
from controlplane.ui.forms import InvitationForm, InvitationSignUpForm, RoleForm, role_choices
from controlplane.ui.mixins import OrgRequiredMixin, UIView, apply_service_error
from controlplane.ui.views.auth import complete_sign_in

SERVICE_ERRORS = (ValidationError, PermissionDenied)


class MembersView(OrgRequiredMixin, TemplateView):
    """The member list with per-row role and remove controls, pending invitations, and the invite form.
    The row actions post to their own URLs and, on a refusal, render this page with the row's error."""

    resource = Resource.MEMBERS
    nav = "members"
    template_name = "ui/members/list.html"

    def is_super_admin(self) -> bool:
        return self.access.role == Role.SUPER_ADMIN

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        org = self.organisation
        memberships = list(Membership.objects.for_org(org).select_related("user").order_by("user__email"))
        with_2fa = set(
            TOTPDevice.objects.filter(user__in=[m.user_id for m in memberships], confirmed=True).values_list(
                "user_id", flat=True
            )
        )
        row_errors: dict[int, list[str]] = kwargs.get("row_errors") or {}
        can_edit = self.access.can(Resource.MEMBERS, "edit")
        choices = role_choices(can_grant_super_admin=self.is_super_admin())
        members = [
            {
                "membership": m,
                "role_label": Role(m.role).label,
                "has_2fa": m.user_id in with_2fa,
                "is_me": m.user_id == self.request.user.pk,
                # Only Super Administrators change or remove a Super Administrator.
                "manageable": can_edit and (m.role != Role.SUPER_ADMIN or self.is_super_admin()),
                "errors": row_errors.get(m.pk, []),
            }
            for m in memberships
        ]
        invitations = list(Invitation.objects.for_org(org).filter(status=InvitationStatus.PENDING))
        shown = {m.pk for m in memberships} | {invitation.pk for invitation in invitations}
        context.update(
            members=members,
            invitations=[
                (invitation, Role(invitation.role).label, row_errors.get(invitation.pk, []))  # type: ignore[call-overload]
                for invitation in invitations
            ],
            # A refusal about a row that is no longer listed (e.g. an invitation revoked meanwhile).
            page_errors=[error for key, errors in row_errors.items() if key not in shown for error in errors],
            role_choices=choices,
            role_descriptions=[(Role(role).label, role_description(role)) for role in ROLE_DESCRIPTIONS],
            can_edit=can_edit,
        )
        context.setdefault("invite_form", InvitationForm(can_grant_super_admin=self.is_super_admin()))
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = InvitationForm(request.POST, can_grant_super_admin=self.is_super_admin())
        if form.is_valid():
            try:
                invitation, _ = invitation_create(
                    organisation=self.organisation,
                    email=form.cleaned_data["email"],
                    role=form.cleaned_data["role"],
                    actor=self.actor,
                )
            except SERVICE_ERRORS as exc:
                apply_service_error(form, exc)
            else:
                messages.success(request, f"Invitation sent to {invitation.email}. The link works for 7 days.")
                return redirect("ui:members", account_id=self.organisation.account_id)
        return self.render_to_response(self.get_context_data(invite_form=form))

    def refused(self, key: Any, exc: ValidationError | PermissionDenied) -> HttpResponse:
        errors = exc.messages if isinstance(exc, ValidationError) else [str(exc)]
        return self.render_to_response(self.get_context_data(row_errors={key: errors}))


class MemberRoleView(MembersView):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        membership = self.get_org_object(Membership, kwargs["member_id"])
        form = RoleForm(request.POST)
        if not form.is_valid():
            return self.refused(membership.pk, ValidationError("Choose one of the roles."))
        try:
            membership_update_role(membership=membership, role=form.cleaned_data["role"], actor=self.actor)
        except SERVICE_ERRORS as exc:
            return self.refused(membership.pk, exc)
        messages.success(request, f"{membership.user.email} is now {Role(form.cleaned_data['role']).label}.")
        return redirect("ui:members", account_id=self.organisation.account_id)


class MemberRemoveView(MembersView):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        membership = self.get_org_object(Membership, kwargs["member_id"])
        email = membership.user.email
        try:
            membership_remove(membership=membership, actor=self.actor)
        except SERVICE_ERRORS as exc:
            return self.refused(membership.pk, exc)
        if membership.user_id == request.user.pk:
            messages.success(request, f"You left {self.organisation}.")
            return redirect("ui:home")
        messages.success(request, f"{email} is removed from {self.organisation}.")
        return redirect("ui:members", account_id=self.organisation.account_id)


class InvitationRevokeView(MembersView):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        invitation = self.get_org_object(Invitation, kwargs["invitation_id"])
        try:
            invitation_revoke(invitation=invitation, actor=self.actor)
        except SERVICE_ERRORS as exc:
            return self.refused(invitation.pk, exc)
        messages.success(request, f"The invitation of {invitation.email} is revoked; its link no longer works.")
        return redirect("ui:members", account_id=self.organisation.account_id)


class InvitationLinkView(UIView):
    """/invitations/<secret>/: the secret is the authority. Someone without an account sets a password here and
    joins; someone with one signs in first; a different signed-in user is told so."""

    template_name = "ui/invitations/detail.html"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            self.invitation = invitation_get_by_secret(kwargs["secret"])
        except Http404 as exc:
            return render(request, "ui/invitations/invalid.html", {"message": str(exc)}, status=404)
        email = self.invitation.email
        self.has_account = User.objects.filter(email__iexact=email).exists()
        user = request.user
        if not user.is_authenticated and self.has_account and request.POST.get("action") != "decline":
            messages.info(request, f"Sign in as {email} to accept the invitation.")
            return redirect_to_login(request.get_full_path())
        self.wrong_user = user.is_authenticated and user.email.lower() != email.lower()  # type: ignore[union-attr]
        return super().dispatch(request, *args, **kwargs)

    def render_page(self, status: int = 200, **extra: Any) -> HttpResponse:
        context = {
            "invitation": self.invitation,
            "organisation": None,
            "invited_organisation": self.invitation.organisation,
            "role_label": Role(self.invitation.role).label,
            "role_description": role_description(self.invitation.role),
            "wrong_user": self.wrong_user,
            "needs_account": not self.request.user.is_authenticated and not self.has_account,
            **extra,
        }
        context.setdefault("signup_form", InvitationSignUpForm(initial={"name": ""}))
        return render(self.request, self.template_name, context, status=status)

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self.render_page()

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        actor = Actor.from_request(request)
        organisation = self.invitation.organisation
        if request.POST.get("action") == "decline":
            invitation_decline(invitation=self.invitation, actor=actor)
            messages.info(request, f"You declined the invitation to {organisation}.")
            return redirect("ui:home" if request.user.is_authenticated else "ui:login")
        if request.POST.get("action") == "switch-user":
            logout(request)
            return redirect(request.get_full_path())
        if self.wrong_user:
            return self.render_page()
        if request.user.is_authenticated:
            try:
                invitation_accept(invitation=self.invitation, user=request.user, actor=actor)  # type: ignore[arg-type]
            except SERVICE_ERRORS as exc:
                messages.error(request, " ".join(exc.messages if isinstance(exc, ValidationError) else [str(exc)]))
                return self.render_page()
            except Http404 as exc:
                return render(request, "ui/invitations/invalid.html", {"message": str(exc)}, status=404)
        else:
            form = InvitationSignUpForm(request.POST)
            if not form.is_valid():
                return self.render_page(signup_form=form)
            try:
                membership = invitation_accept(
                    invitation=self.invitation,
                    user=None,
                    actor=actor,
                    password=form.cleaned_data["password1"],
                    name=form.cleaned_data["name"],
                )
            except SERVICE_ERRORS as exc:
                apply_service_error(form, exc, field_map={"password": "password1"})
                return self.render_page(signup_form=form)
            except Http404 as exc:
                return render(request, "ui/invitations/invalid.html", {"message": str(exc)}, status=404)
            complete_sign_in(request, membership.user)
        messages.success(request, f"Welcome to {organisation}! You joined as {Role(self.invitation.role).label}.")
        return redirect("ui:overview", account_id=organisation.account_id)
