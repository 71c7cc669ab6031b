"""Forms of the Access pages. They turn what a person types (one value a line, names instead of ids) into the
Cloudflare-shaped data the services take, and check the shape of each value so that a mistake is reported beside
the row that has it; the services still decide everything (references, limits, policy rules)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from django import forms

from access.logic.rules import RuleError, parse_rule
from access.models import AccessList, Policy

SESSION_DURATIONS = [
    ("0s", "No duration, expires immediately"),
    ("15m", "15 minutes"),
    ("30m", "30 minutes"),
    ("6h", "6 hours"),
    ("12h", "12 hours"),
    ("24h", "24 hours"),
    ("168h", "1 week"),
    ("730h", "1 month"),
]
TOKEN_DURATIONS = [
    ("8760h", "1 year"),
    ("forever", "Non-expiring"),
    ("720h", "30 days"),
    ("168h", "1 week"),
    ("24h", "24 hours"),
]
RULE_SELECTORS = [
    ("", "—"),
    ("email", "Emails"),
    ("email_domain", "Emails ending in"),
    ("everyone", "Everyone"),
    ("ip", "IP ranges"),
    ("geo", "Country"),
    ("group", "Access group"),
    ("service_token", "Service token"),
    ("any_valid_service_token", "Any valid service token"),
    ("login_method", "Login method"),
    ("email_list", "Email list"),
    ("ip_list", "IP list"),
]
SELECTOR_LABELS = dict(RULE_SELECTORS)
# The key inside each selector's object, for those that take a value.
VALUE_KEYS = {
    "email": "email",
    "email_domain": "domain",
    "ip": "ip",
    "geo": "country_code",
    "group": "id",
    "service_token": "token_id",
    "login_method": "id",
    "email_list": "id",
    "ip_list": "id",
}
REFERENCE_SELECTORS = {"group", "service_token", "login_method", "email_list", "ip_list"}
SECTIONS = {
    "include": ("Include", "Any one of these rules lets a visitor in (OR)."),
    "require": ("Require", "Every one of these must also match (AND)."),
    "exclude": ("Exclude", "None of these may match (NOT)."),
}
DEFAULT_ROWS = {"include": 3, "require": 2, "exclude": 2}
MAX_RULE_ROWS = 20
MAX_VALUES_PER_ROW = 1000


def duration_choices(current: str | None, *, blank: str | None = None) -> list[tuple[str, str]]:
    """The standard session lengths, plus `current` when it was set to something else through the API."""
    choices = list(SESSION_DURATIONS)
    if current and current not in dict(choices):
        choices.append((current, current))
    if blank is not None:
        choices.insert(0, ("", blank))
    return choices


def _lines(text: str) -> list[str]:
    return [line.strip() for line in re.split(r"[\r\n,]+", text or "") if line.strip()]


class RuleNames:
    """Names of the organisation's groups, lists, service tokens and identity providers, both ways, so that
    people type names and the rules carry ids."""

    def __init__(self, *, groups=(), lists=(), tokens=(), idps=()):
        self.by_kind: dict[str, dict[str, str]] = {
            "group": {str(g.pk): g.name for g in groups},
            "service_token": {str(t.pk): t.name for t in tokens},
            "login_method": {str(i.pk): i.name for i in idps},
            "email_list": {str(x.pk): x.name for x in lists if x.type == AccessList.Type.EMAIL},
            "ip_list": {str(x.pk): x.name for x in lists if x.type == AccessList.Type.IP},
        }

    def name(self, kind: str, object_id: str) -> str:
        return self.by_kind.get(kind, {}).get(object_id, object_id)

    def resolve(self, kind: str, text: str) -> str | None:
        names = self.by_kind[kind]
        if text in names:
            return text
        wanted = text.casefold()
        matches = [pk for pk, name in names.items() if name.casefold() == wanted]
        return matches[0] if len(matches) == 1 else None

    def choices(self, kind: str) -> list[str]:
        return sorted(self.by_kind[kind].values(), key=str.casefold)


class RuleBuilderMixin:
    """Rows of (selector, values one a line) for include, require and exclude. Works without JavaScript: a fixed
    number of rows is rendered, empty rows are ignored. `rule_sections` is what templates loop over."""

    sections: tuple[str, ...] = ("include", "require", "exclude")

    def add_rule_fields(self, directory: RuleNames, initial: dict[str, list[dict[str, Any]]] | None = None) -> None:
        self.directory = directory
        self.section_errors: dict[str, list[str]] = {}
        initial = initial or {}
        self.row_counts: dict[str, int] = {}
        for section in self.sections:
            rows = self._rows_from_rules(initial.get(section) or [])
            posted = self._posted_rows(section)
            count = min(MAX_RULE_ROWS, max(DEFAULT_ROWS[section], len(rows) + 1, posted))
            self.row_counts[section] = count
            for index in range(count):
                selector, values = rows[index] if index < len(rows) else ("", "")
                self.fields[f"{section}_{index}_selector"] = forms.ChoiceField(  # type: ignore[attr-defined]
                    label=f"{SECTIONS[section][0]} rule {index + 1}: selector",
                    choices=RULE_SELECTORS,
                    required=False,
                    initial=selector,
                )
                self.fields[f"{section}_{index}_values"] = forms.CharField(  # type: ignore[attr-defined]
                    label=f"{SECTIONS[section][0]} rule {index + 1}: values",
                    required=False,
                    initial=values,
                    max_length=100_000,
                    widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false", "placeholder": "one per line"}),
                )

    def _posted_rows(self, section: str) -> int:
        data = getattr(self, "data", None) or {}
        indices = [int(m.group(1)) for key in data if (m := re.fullmatch(rf"{section}_(\d+)_selector", key))]
        return max(indices) + 1 if indices else 0

    def _rows_from_rules(self, rules: list[dict[str, Any]]) -> list[tuple[str, str]]:
        grouped: dict[str, list[str]] = {}
        for rule in rules:
            if not isinstance(rule, dict) or len(rule) != 1:
                continue
            kind, body = next(iter(rule.items()))
            if kind not in SELECTOR_LABELS:
                continue
            values = grouped.setdefault(kind, [])
            key = VALUE_KEYS.get(kind)
            if key and isinstance(body, dict) and body.get(key):
                value = str(body[key])
                values.append(self.directory.name(kind, value) if kind in REFERENCE_SELECTORS else value)
        return [(kind, "\n".join(values)) for kind, values in grouped.items()]

    @property
    def rule_sections(self) -> list[dict[str, Any]]:
        return [
            {
                "name": section,
                "label": SECTIONS[section][0],
                "help": SECTIONS[section][1],
                "errors": self.section_errors.get(section, []),
                "rows": [
                    (self[f"{section}_{i}_selector"], self[f"{section}_{i}_values"])  # type: ignore[index]
                    for i in range(self.row_counts[section])
                ],
            }
            for section in self.sections
        ]

    def reference_names(self) -> dict[str, list[str]]:
        return {kind: self.directory.choices(kind) for kind in REFERENCE_SELECTORS}

    def clean_rules(self) -> dict[str, list[dict[str, Any]]]:
        """Called from `clean()`: the rules of each section, with errors added beside the row that has them."""
        result: dict[str, list[dict[str, Any]]] = {}
        data = self.cleaned_data  # type: ignore[attr-defined]
        for section in self.sections:
            rules: list[dict[str, Any]] = []
            for index in range(self.row_counts[section]):
                selector = data.get(f"{section}_{index}_selector") or ""
                values = _lines(data.get(f"{section}_{index}_values") or "")
                field = f"{section}_{index}_values"
                if not selector:
                    if values:
                        self.add_error(f"{section}_{index}_selector", "Choose what these values are.")  # type: ignore[attr-defined]
                    continue
                key = VALUE_KEYS.get(selector)
                if key is None:
                    if values:
                        self.add_error(field, f"“{SELECTOR_LABELS[selector]}” takes no values: leave this empty.")  # type: ignore[attr-defined]
                        continue
                    rules.append({selector: {}})
                    continue
                if not values:
                    self.add_error(field, f"Enter at least one value for “{SELECTOR_LABELS[selector]}”, one a line.")  # type: ignore[attr-defined]
                    continue
                if len(values) > MAX_VALUES_PER_ROW:
                    self.add_error(field, f"At most {MAX_VALUES_PER_ROW} values in one rule.")  # type: ignore[attr-defined]
                    continue
                for value in values:
                    if selector in REFERENCE_SELECTORS:
                        resolved = self.directory.resolve(selector, value)
                        if resolved is None:
                            known = ", ".join(self.directory.choices(selector)) or "none yet"
                            self.add_error(  # type: ignore[attr-defined]
                                field, f"No {SELECTOR_LABELS[selector].lower()} named “{value}” (you have: {known})."
                            )
                            break
                        value = resolved
                    try:
                        parse_rule({selector: {key: value}})
                    except RuleError as exc:
                        self.add_error(field, str(exc).split(": ", 1)[-1])  # type: ignore[attr-defined]
                        break
                    rules.append({selector: {key: value}})
            result[section] = rules
        if not result.get("include") and not any(f.startswith("include_") for f in self.errors):  # type: ignore[attr-defined]
            self.section_errors.setdefault("include", []).append(
                "Add at least one Include rule (for example Emails, or Everyone)."
            )
            self.add_error(None, "A policy needs at least one Include rule.")  # type: ignore[attr-defined]
        return result


class PolicyFieldsMixin(RuleBuilderMixin):
    def add_policy_fields(
        self,
        *,
        name_field: str = "name",
        duration_field: str = "session_duration",
        required: bool = True,
        current_duration: str = "",
    ) -> None:
        self.fields[name_field] = forms.CharField(label="Policy name", max_length=255, required=required)  # type: ignore[attr-defined]
        self.fields["decision"] = forms.ChoiceField(  # type: ignore[attr-defined]
            label="Action",
            choices=Policy.Decision.choices,
            initial=Policy.Decision.ALLOW,
            help_text="Allow and Block apply after login; Bypass lets anyone through without a login; Service Auth "
            "admits service tokens without a login.",
        )
        self.fields[duration_field] = forms.ChoiceField(  # type: ignore[attr-defined]
            label="Policy session duration",
            choices=duration_choices(current_duration, blank="Same as the application"),
            required=False,
        )


class PolicyForm(PolicyFieldsMixin, forms.Form):
    def __init__(self, *args: Any, directory: RuleNames, policy: Policy | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.add_policy_fields(current_duration=policy.session_duration if policy else "")
        initial_rules = {}
        if policy is not None:
            self.initial.update(name=policy.name, decision=policy.decision, session_duration=policy.session_duration)
            initial_rules = {"include": policy.include, "require": policy.require, "exclude": policy.exclude}
        self.add_rule_fields(directory, initial_rules)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        data.update(self.clean_rules())
        return data

    def service_data(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "name": data["name"],
            "decision": data["decision"],
            "session_duration": data.get("session_duration") or "",
            **{section: data.get(section, []) for section in self.sections},
        }


class GroupForm(RuleBuilderMixin, forms.Form):
    name = forms.CharField(label="Group name", max_length=255)

    def __init__(self, *args: Any, directory: RuleNames, group: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        initial_rules = {}
        if group is not None:
            self.initial["name"] = group.name
            initial_rules = {"include": group.include, "require": group.require, "exclude": group.exclude}
        self.add_rule_fields(directory, initial_rules)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        data.update(self.clean_rules())
        return data

    def service_data(self) -> dict[str, Any]:
        return {"name": self.cleaned_data["name"], **{s: self.cleaned_data.get(s, []) for s in self.sections}}


class AccessListForm(forms.Form):
    name = forms.CharField(label="List name", max_length=255)
    type = forms.ChoiceField(label="Type", choices=AccessList.Type.choices)
    description = forms.CharField(label="Description", max_length=500, required=False)
    items = forms.CharField(
        label="Entries",
        required=False,
        max_length=2_000_000,
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false"}),
        help_text="One email address, or one IP address or CIDR range, a line.",
    )

    def __init__(self, *args: Any, access_list: AccessList | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if access_list is not None:
            del self.fields["type"]
            self.initial.update(
                name=access_list.name, description=access_list.description, items="\n".join(access_list.items)
            )

    def service_data(self) -> dict[str, Any]:
        data = {key: self.cleaned_data[key] for key in ("name", "description")}
        if "type" in self.cleaned_data:
            data["type"] = self.cleaned_data["type"]
        data["items"] = [{"value": line} for line in _lines(self.cleaned_data.get("items") or "")]
        return data


class ServiceTokenForm(forms.Form):
    name = forms.CharField(label="Service token name", max_length=255)
    duration = forms.ChoiceField(label="Service token duration", choices=TOKEN_DURATIONS, initial="8760h")


class TesterForm(forms.Form):
    email = forms.CharField(label="Email", max_length=320, required=False)
    ip = forms.CharField(label="IP address", max_length=64, required=False)
    country = forms.CharField(label="Country code", max_length=2, required=False, help_text="Two letters, e.g. DE.")
    url = forms.CharField(
        label="Application URL", max_length=1024, required=False, help_text="Empty: test every application."
    )
    service_token_id = forms.ChoiceField(
        label="Service token",
        choices=[("", "None")],
        required=False,
        help_text="A request sending this token's CF-Access-Client-Id and -Secret.",
    )

    def __init__(self, *args: Any, tokens: list[tuple[str, str]] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["service_token_id"].choices = [("", "None"), *(tokens or [])]

    def clean_url(self) -> str:
        value = self.cleaned_data["url"].strip()
        try:
            host = urlsplit(value if "://" in value else f"https://{value}").hostname
        except ValueError:
            host = None
        if value and not host:
            raise forms.ValidationError("Not a URL: type it as in the address bar, e.g. https://app.example.com/admin.")
        return value


class LogFilterForm(forms.Form):
    email = forms.CharField(label="Email", max_length=320, required=False)
    allowed = forms.ChoiceField(
        label="Decision", choices=[("", "Any"), ("yes", "Allowed"), ("no", "Blocked")], required=False
    )
    app = forms.ChoiceField(label="Application", choices=[("", "Any")], required=False)

    def __init__(self, *args: Any, apps: list[tuple[str, str]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["app"].choices = [("", "Any"), *apps]


class GlobalSessionForm(forms.Form):
    session_duration = forms.ChoiceField(
        label="Global session duration",
        help_text="How long a login on the team domain lasts before people sign in again (at least 15 minutes).",
    )

    def __init__(self, *args: Any, current: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["session_duration"].choices = [c for c in duration_choices(current) if c[0] not in ("0s",)]
        self.initial["session_duration"] = current


class LoginDesignForm(forms.Form):
    background_color = forms.CharField(label="Background colour", max_length=7, required=False)
    text_color = forms.CharField(label="Text colour", max_length=7, required=False)
    logo_path = forms.CharField(label="Logo URL", max_length=500, required=False, help_text="An https:// image URL.")
    header_text = forms.CharField(label="Header text", max_length=500, required=False)
    footer_text = forms.CharField(label="Footer text", max_length=500, required=False)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        for name in ("background_color", "text_color"):
            self.fields[name].widget = forms.TextInput(attrs={"placeholder": "#1f2933", "spellcheck": "false"})
            self.fields[name].help_text = "A colour as #rgb or #rrggbb; empty for the default."

    def service_data(self) -> dict[str, str]:
        return {key: value for key, value in self.cleaned_data.items() if value}


class KeyIntervalForm(forms.Form):
    key_rotation_interval_days = forms.IntegerField(
        label="Rotate the signing key every (days)", min_value=21, max_value=365
    )


class RevokeUserForm(forms.Form):
    email = forms.EmailField(label="Email of the user", max_length=320)


class ConfirmForm(forms.Form):
    """The POST of a confirmation page; only the CSRF token matters."""


MAX_DESTINATION_ROWS = 5


def split_destination(uri: str, zones: list[str]) -> tuple[str, str, str]:
    """`portainer.example.com/admin` → ("portainer", "example.com", "admin"), using the longest matching zone."""
    host, slash, path = uri.partition("/")
    for zone in sorted(zones, key=len, reverse=True):
        if host == zone:
            return "", zone, path
        if host.endswith("." + zone):
            return host[: -len(zone) - 1], zone, path
    subdomain, _, parent = host.partition(".")
    return subdomain, parent, path


class ApplicationForm(PolicyFieldsMixin, forms.Form):
    """Cloudflare's "Add a self-hosted application" wizard on one page: the application, its domains (up to five,
    subdomain + one of the organisation's active zones + optional path), login methods, and its policies: existing
    reusable ones ticked, and optionally a new one written here with the rule builder."""

    name = forms.CharField(label="Application name", max_length=255)
    session_duration = forms.ChoiceField(
        label="Session duration",
        help_text="How long a visitor stays signed in to this application before Access asks again.",
    )
    idps = forms.MultipleChoiceField(
        label="Identity providers",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="How people sign in. None ticked: every login method of the account is accepted.",
    )
    policies = forms.MultipleChoiceField(label="Existing policies", required=False, widget=forms.CheckboxSelectMultiple)

    def __init__(
        self,
        *args: Any,
        zones: list[str],
        idps: list[tuple[str, str]],
        policies: list[tuple[str, str]],
        directory: RuleNames,
        app: Any = None,
        attached: list[str] | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.zones = zones
        current = app.session_duration if app is not None else "24h"
        self.fields["session_duration"].choices = duration_choices(current)
        self.fields["idps"].choices = idps
        self.fields["policies"].choices = policies
        for index in range(MAX_DESTINATION_ROWS):
            extra = index > 0
            self.fields[f"dest_{index}_subdomain"] = forms.CharField(
                label="Subdomain", max_length=253, required=False, widget=forms.TextInput(attrs={"spellcheck": "false"})
            )
            zone_choices = [("", "Choose a domain" if not extra else "—"), *((z, z) for z in zones)]
            self.fields[f"dest_{index}_zone"] = forms.ChoiceField(label="Domain", choices=zone_choices, required=False)
            self.fields[f"dest_{index}_path"] = forms.CharField(
                label="Path", max_length=400, required=False, widget=forms.TextInput(attrs={"spellcheck": "false"})
            )
        self.add_policy_fields(name_field="policy_name", duration_field="policy_session_duration", required=False)
        self.add_rule_fields(directory)
        if app is not None:
            self.initial.update(name=app.name, session_duration=app.session_duration, idps=app.allowed_idps)
            self.initial["policies"] = attached or []
            for index, item in enumerate(app.destinations[:MAX_DESTINATION_ROWS]):
                subdomain, zone, path = split_destination(item["uri"], zones)
                if zone not in zones:
                    field = self.fields[f"dest_{index}_zone"]
                    field.choices = [*field.choices, (zone, f"{zone} (not active)")]
                self.initial.update(
                    {f"dest_{index}_subdomain": subdomain, f"dest_{index}_zone": zone, f"dest_{index}_path": path}
                )
        else:
            self.initial["session_duration"] = "24h"

    @property
    def destination_rows(self) -> list[tuple[Any, Any, Any]]:
        return [
            (self[f"dest_{i}_subdomain"], self[f"dest_{i}_zone"], self[f"dest_{i}_path"])
            for i in range(MAX_DESTINATION_ROWS)
        ]

    @property
    def extra_rows_used(self) -> bool:
        return any(self[f"dest_{i}_zone"].value() for i in range(1, MAX_DESTINATION_ROWS))

    def _creates_policy(self) -> bool:
        data = self.cleaned_data
        if data.get("policy_name"):
            return True
        return any(
            data.get(f"{s}_{i}_selector") or data.get(f"{s}_{i}_values")
            for s in self.sections
            for i in range(self.row_counts[s])
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        self.destination_rows_used: list[int] = []
        uris = []
        for index in range(MAX_DESTINATION_ROWS):
            subdomain = (data.get(f"dest_{index}_subdomain") or "").strip().strip(".")
            zone = data.get(f"dest_{index}_zone") or ""
            path = (data.get(f"dest_{index}_path") or "").strip().lstrip("/")
            if not zone:
                if subdomain or path:
                    self.add_error(f"dest_{index}_zone", "Choose the domain this hostname is under.")
                continue
            host = f"{subdomain}.{zone}" if subdomain else zone
            uris.append(f"{host}/{path}" if path else host)
            self.destination_rows_used.append(index)
        if not uris and not self.has_error("dest_0_zone"):
            self.add_error("dest_0_zone", "Choose the domain of the application (add a zone first if you have none).")
        data["destinations"] = [{"type": "public", "uri": uri} for uri in uris]
        data["new_policy"] = None
        if self._creates_policy():
            rules = self.clean_rules()
            if not data.get("policy_name"):
                self.add_error("policy_name", "Give the new policy a name.")
            data["new_policy"] = {
                "name": data.get("policy_name") or "",
                "decision": data.get("decision") or Policy.Decision.ALLOW,
                "session_duration": data.get("policy_session_duration") or "",
                **rules,
            }
        elif not data.get("policies"):
            self.add_error(
                "policies", "Choose a policy or create one below: without a policy nobody can reach the application."
            )
        return data

    def service_data(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "name": data["name"],
            "type": "self_hosted",
            "destinations": data["destinations"],
            "session_duration": data["session_duration"],
            "allowed_idps": list(data.get("idps") or []),
            "policies": list(data.get("policies") or []),
        }
