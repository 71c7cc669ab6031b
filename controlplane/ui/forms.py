"""Forms of the UI. They parse and check input; the writes themselves are the services' job."""

from __future__ import annotations

import datetime
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.forms import PasswordResetForm as DjangoPasswordResetForm
from django.urls import reverse
from django.utils import timezone

from controlplane.choices import NOT_AVAILABLE_YET, TOKEN_RESOURCES, AuditAction, Level, Role, scope
from controlplane.mail import email_send
from controlplane.validators import validate_team_name

NO_ACCESS = "none"


class LoginForm(forms.Form):
    email = forms.EmailField(
        max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "username", "autofocus": True})
    )
    password = forms.CharField(strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}))


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Code",
        max_length=32,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "autofocus": True, "spellcheck": "false", "size": 12}
        ),
        help_text="The 6-digit code from your authenticator app, or one of your backup codes.",
    )


class ConfirmCodeForm(CodeForm):
    code = forms.CharField(
        label="Code from the app",
        max_length=12,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "size": 12}),
        help_text="Enter the 6-digit code the app shows now, to prove it is set up.",
    )


class PasswordResetForm(DjangoPasswordResetForm):
    """Django's reset form, sending its mail through our Celery task (the outbox in embedded mode)."""

    email = forms.EmailField(
        label="Email", max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True})
    )

    def send_mail(
        self,
        subject_template_name: str,
        email_template_name: str,
        context: dict[str, Any],
        from_email: str | None,
        to_email: str,
        html_email_template_name: str | None = None,
    ) -> None:
        # Links point at PUBLIC_URL, never at the request's Host header (reset-link poisoning).
        path = reverse("ui:password-reset-confirm", kwargs={"uidb64": context["uid"], "token": context["token"]})
        email_send(
            to=[to_email],
            subject="Reset your password for the Zero Trust control plane",
            template="controlplane/email/password_reset",
            context={
                "email": to_email,
                "link": f"{settings.PUBLIC_URL}{path}",
                "hours": settings.PASSWORD_RESET_TIMEOUT // 3600,
            },
            organisation_id=None,
        )


class OrganisationCreateForm(forms.Form):
    display_name = forms.CharField(
        label="Organisation name", max_length=100, help_text="Shown in the dashboard; change it whenever you like."
    )
    team_name = forms.CharField(
        max_length=63,
        validators=[validate_team_name],
        widget=forms.TextInput(attrs={"spellcheck": "false", "autocapitalize": "none"}),
    )
    require_2fa = forms.BooleanField(
        label="Require two-factor authentication for every member",
        required=False,
        initial=True,
        help_text="Recommended. Members without an authenticator app are asked to set one up when they sign in.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team_name"].help_text = (
            "Lower case letters, digits and hyphens. It names your team domain, "
            f"<team name>.{settings.AUTH_DOMAIN}, where your users sign in to your applications."
        )


class OrganisationSettingsForm(forms.Form):
    display_name = forms.CharField(label="Organisation name", max_length=100)
    require_2fa = forms.BooleanField(
        label="Require two-factor authentication for every member",
        required=False,
        help_text="Members who have not set up an authenticator app are made to, the next time they open a page.",
    )


class TeamRenameForm(forms.Form):
    team_name = forms.CharField(
        label="New team name",
        max_length=63,
        validators=[validate_team_name],
        widget=forms.TextInput(attrs={"spellcheck": "false", "autocapitalize": "none"}),
    )
    confirm = forms.BooleanField(
        label="I understand that the team domain changes and what stops working until it is updated",
        required=True,
        error_messages={"required": "Tick the box to confirm that you understand what the rename breaks."},
    )

    def __init__(self, *args: Any, current: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.current = current

    def clean_team_name(self) -> str:
        value = self.cleaned_data["team_name"].strip()
        if value == self.current:
            raise forms.ValidationError("This is already the team name.")
        return value


def role_choices(*, can_grant_super_admin: bool) -> list[tuple[str, str]]:
    return [(role.value, role.label) for role in Role if can_grant_super_admin or role != Role.SUPER_ADMIN]


class InvitationForm(forms.Form):
    email = forms.EmailField(label="Email address", max_length=254)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.READ_ONLY)

    def __init__(self, *args: Any, can_grant_super_admin: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = role_choices(can_grant_super_admin=can_grant_super_admin)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class InvitationSignUpForm(forms.Form):
    name = forms.CharField(label="Your name", max_length=150, required=False)
    password1 = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="At least 10 characters; not a common password, not all digits, not like your email.",
    )
    password2 = forms.CharField(
        label="Password again", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("password1") and data.get("password2") and data["password1"] != data["password2"]:
            self.add_error("password2", "The two passwords differ.")
        return data


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=120, help_text="What the token is for, e.g. “Terraform” or “CI deploys”.")
    expires_on = forms.DateField(
        label="Expires on",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Optional. The token stops working at the end of this day (UTC). Leave empty for no expiry.",
    )
    allowed_networks = forms.CharField(
        label="Client IP address filtering",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "192.0.2.0/24\n2001:db8::/32", "spellcheck": "false"}),
        help_text="Optional. IP addresses or CIDR ranges, one per line; the token works only from them.",
    )

    def __init__(self, *args: Any, scopes: frozenset[str] = frozenset(), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._permission_names: list[tuple[Any, str]] = []
        for resource in TOKEN_RESOURCES:
            name = f"perm_{resource.value}"
            choices = [(NO_ACCESS, "No access")]
            choices += [(level.value, level.label) for level in Level if scope(resource, level) in scopes]
            self.fields[name] = forms.ChoiceField(
                label=resource.label, choices=choices, initial=NO_ACCESS, required=False, widget=forms.RadioSelect
            )
            self._permission_names.append((resource, name))

    def permission_matrix(self) -> list[dict[str, Any]]:
        """Rows of the permission table: one radio per level, greyed out where the user's role cannot grant it."""
        rows = []
        for resource, name in self._permission_names:
            bound = self[name]
            allowed = {value for value, _ in self.fields[name].choices}
            current = bound.value() or NO_ACCESS
            cells = [
                {"value": value, "label": label, "allowed": value in allowed, "checked": current == value}
                for value, label in ((NO_ACCESS, "No access"), (Level.READ, "Read"), (Level.EDIT, "Edit"))
            ]
            rows.append(
                {
                    "resource": resource,
                    "name": bound.html_name,
                    "cells": cells,
                    "errors": bound.errors,
                    "not_available": resource in NOT_AVAILABLE_YET,
                }
            )
        return rows

    def grants(self) -> dict[str, str]:
        return {
            resource.value: self.cleaned_data[name]
            for resource, name in self._permission_names
            if self.cleaned_data.get(name) not in (None, "", NO_ACCESS)
        }

    def expires_at(self) -> datetime.datetime | None:
        day = self.cleaned_data.get("expires_on")
        if day is None:
            return None
        return datetime.datetime.combine(day, datetime.time(23, 59, 59), tzinfo=datetime.UTC)

    def clean_expires_on(self) -> datetime.date | None:
        day = self.cleaned_data.get("expires_on")
        if day is not None and day < timezone.now().date():
            raise forms.ValidationError("Choose today or a later date.")
        return day

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.errors and not self.grants():
            self.add_error(None, "Grant the token at least one permission (read or edit on a resource).")
        return data


class ZoneForm(forms.Form):
    name = forms.CharField(
        label="Domain",
        max_length=253,
        widget=forms.TextInput(attrs={"placeholder": "example.com", "spellcheck": "false", "autocapitalize": "none"}),
        help_text="A domain you control, such as example.com. You prove it with a DNS TXT record.",
    )


class AuditFilterForm(forms.Form):
    action = forms.ChoiceField(required=False, choices=[("", "Any action"), *AuditAction.choices])
    resource_type = forms.ChoiceField(required=False, label="Object type")
    actor = forms.CharField(required=False, label="Actor email", max_length=254)
    object = forms.CharField(required=False, label="Object name or id", max_length=255)
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, resource_types: list[str] = (), **kwargs: Any) -> None:  # type: ignore[assignment]
        super().__init__(*args, **kwargs)
        self.fields["resource_type"].choices = [("", "Any object type")] + [
            (t, t.replace("_", " ")) for t in resource_types
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "The end date is before the start date.")
        return data
