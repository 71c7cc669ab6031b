"""Forms of the tunnel pages. The public hostname form follows Cloudflare's: subdomain + zone + optional path,
service type + URL, and the additional application settings (TLS, HTTP, connection)."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import PermissionDenied, ValidationError

SERVICE_TYPES = [
    ("http", "HTTP"),
    ("https", "HTTPS"),
    ("unix", "UNIX"),
    ("unix+tls", "UNIX+TLS"),
    ("http_status", "HTTP_STATUS"),
    ("hello_world", "HELLO_WORLD"),
]

# originRequest wire key → (form field, kind)
ORIGIN_FIELDS: dict[str, tuple[str, str]] = {
    "originServerName": ("origin_server_name", "str"),
    "noTLSVerify": ("no_tls_verify", "bool"),
    "caPool": ("ca_pool", "str"),
    "matchSNItoHost": ("match_sni_to_host", "bool"),
    "http2Origin": ("http2_origin", "bool"),
    "httpHostHeader": ("http_host_header", "str"),
    "disableChunkedEncoding": ("disable_chunked_encoding", "bool"),
    "connectTimeout": ("connect_timeout", "int"),
    "tlsTimeout": ("tls_timeout", "int"),
    "tcpKeepAlive": ("tcp_keep_alive", "int"),
    "keepAliveConnections": ("keep_alive_connections", "int"),
    "keepAliveTimeout": ("keep_alive_timeout", "int"),
    "noHappyEyeballs": ("no_happy_eyeballs", "bool"),
}


class TunnelCreateForm(forms.Form):
    name = forms.CharField(
        max_length=255, help_text="A name you will recognise, e.g. the server it runs on (not a UUID)."
    )


class TunnelRenameForm(forms.Form):
    name = forms.CharField(max_length=255)


def _seconds(label: str, default: int, help_text: str = "") -> forms.IntegerField:
    return forms.IntegerField(
        label=label, required=False, min_value=0, help_text=help_text or f"Seconds. Default {default}."
    )


class PublicHostnameForm(forms.Form):
    subdomain = forms.CharField(
        required=False, max_length=200, help_text="Leave empty for the zone itself; * for every subdomain."
    )
    zone = forms.ChoiceField(label="Domain")
    path = forms.CharField(required=False, max_length=500, help_text="A regular expression, e.g. ^/blog")
    service_type = forms.ChoiceField(label="Type", choices=SERVICE_TYPES, initial="http")
    url = forms.CharField(
        label="URL",
        required=False,
        max_length=500,
        help_text="host:port for HTTP(S) (e.g. localhost:3001), a socket path for UNIX, a status code for HTTP_STATUS.",
    )
    # TLS
    origin_server_name = forms.CharField(
        label="Origin server name",
        required=False,
        help_text="The name the origin's certificate is checked against (and sent as SNI).",
    )
    no_tls_verify = forms.BooleanField(
        label="No TLS verify", required=False, help_text="Accept any certificate from the origin."
    )
    ca_pool = forms.CharField(
        label="CA pool", required=False, help_text="Path, on the connector's server, of extra CA certificates."
    )
    match_sni_to_host = forms.BooleanField(label="Match SNI to host", required=False)
    http2_origin = forms.BooleanField(label="HTTP2 connection", required=False)
    # HTTP
    http_host_header = forms.CharField(label="HTTP host header", required=False)
    disable_chunked_encoding = forms.BooleanField(label="Disable chunked encoding", required=False)
    # Connection
    connect_timeout = _seconds("Connect timeout", 30)
    tls_timeout = _seconds("TLS timeout", 10)
    tcp_keep_alive = _seconds("TCP keep-alive interval", 30)
    keep_alive_connections = forms.IntegerField(
        label="Keep-alive connections", required=False, min_value=0, help_text="Idle connections kept. Default 100."
    )
    keep_alive_timeout = _seconds("Idle connection expiration", 90)
    no_happy_eyeballs = forms.BooleanField(label="No happy eyeballs", required=False)

    def __init__(self, *args: Any, zones: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["zone"].choices = [(name, name) for name in zones]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        kind = data.get("service_type")
        url = (data.get("url") or "").strip()
        if kind in ("http", "https", "unix", "unix+tls", "http_status") and not url:
            self.add_error("url", "This service type needs a URL.")
        return data

    def add_service_error(self, exc: ValidationError | PermissionDenied) -> None:
        """Show a refusal of the configuration service beside the field it is about, in the form's words: the
        service names fields and settings as the API does (`config.ingress[2].originRequest.noTLSVerify`)."""
        if isinstance(exc, PermissionDenied) or not hasattr(exc, "error_dict"):
            self.add_error(None, str(exc) if isinstance(exc, PermissionDenied) else exc.messages)
            return
        for field, errors in exc.message_dict.items():
            name = _form_field_of(field)
            self.add_error(name if name in self.fields else None, [in_ui_words(error) for error in errors])

    def to_rule(self) -> dict[str, Any]:
        data = self.cleaned_data
        subdomain = (data.get("subdomain") or "").strip().strip(".")
        hostname = f"{subdomain}.{data['zone']}" if subdomain else data["zone"]
        kind, url = data["service_type"], (data.get("url") or "").strip()
        if kind in ("http", "https"):
            service = url if "://" in url else f"{kind}://{url}"
        elif kind in ("unix", "unix+tls"):
            service = f"{kind}:{url}"
        elif kind == "http_status":
            service = f"http_status:{url}"
        else:
            service = "hello_world"
        rule: dict[str, Any] = {"hostname": hostname, "service": service}
        if (data.get("path") or "").strip():
            rule["path"] = data["path"].strip()
        origin: dict[str, Any] = {}
        for key, (field, kind_) in ORIGIN_FIELDS.items():
            value = data.get(field)
            if kind_ == "bool" and value:
                origin[key] = True
            elif kind_ == "int" and value is not None:
                origin[key] = value
            elif kind_ == "str" and value:
                origin[key] = value.strip()
        if origin:
            rule["originRequest"] = origin
        return rule

    @staticmethod
    def initial_from_rule(rule: dict[str, Any], zones: list[str]) -> dict[str, Any]:
        hostname = rule.get("hostname", "")
        zone = max((z for z in zones if hostname == z or hostname.endswith("." + z)), key=len, default="")
        subdomain = hostname[: -len(zone) - 1] if zone and hostname != zone else ""
        service = rule.get("service", "")
        if service.startswith(("http://", "https://")):
            kind, url = service.split("://", 1)
        elif service.startswith(("unix:", "unix+tls:")):
            kind, url = service.split(":", 1)
        elif service.startswith("http_status:"):
            kind, url = "http_status", service.split(":", 1)[1]
        else:
            kind, url = "hello_world", ""
        initial: dict[str, Any] = {
            "subdomain": subdomain,
            "zone": zone,
            "path": rule.get("path", ""),
            "service_type": kind,
            "url": url,
        }
        for key, (field, _kind) in ORIGIN_FIELDS.items():
            if key in (rule.get("originRequest") or {}):
                initial[field] = rule["originRequest"][key]
        return initial


# The label of every originRequest setting, as the hostname form shows it; settings the form has no field for
# (set through the API) get a label in the same style.
SETTING_LABELS: dict[str, str] = {
    **{key: str(PublicHostnameForm.base_fields[field].label) for key, (field, _kind) in ORIGIN_FIELDS.items()},
    "proxyType": "Proxy type",
    "access": "Access token check",
}
_RULE_FIELDS = {"hostname": "subdomain", "path": "path", "service": "url"}
_ERROR_FIELD = re.compile(r"^(?:config\.ingress\[\d+\]\.)?(?:(hostname|path|service)|originRequest\.(\w+))")
_SETTING_NAME = re.compile(r"\b(" + "|".join(sorted(SETTING_LABELS, key=len, reverse=True)) + r")\b")


def _form_field_of(error_field: str) -> str | None:
    match = _ERROR_FIELD.match(error_field)
    if match is None:
        return None
    if match.group(1):
        return _RULE_FIELDS[match.group(1)]
    return ORIGIN_FIELDS.get(match.group(2), (None, ""))[0]


def in_ui_words(message: str) -> str:
    """A validation message with API setting names replaced by the form's labels ("noTLSVerify must be true or
    false" → "“No TLS verify” must be true or false")."""
    return _SETTING_NAME.sub(lambda m: f"“{SETTING_LABELS[m.group(1)]}”", message)


def _seconds_text(value: int) -> str:
    return f"{value} s" if value < 120 or value % 60 else f"{value // 60} min"


def setting_words(origin_request: dict[str, Any] | None) -> list[str]:
    """A rule's originRequest settings as the hostname list shows them: "No TLS verify", "Connect timeout: 5 s"
    (never the wire names and Python values)."""
    words = []
    for key, value in (origin_request or {}).items():
        label = SETTING_LABELS.get(key, key)
        if key == "access" and isinstance(value, dict):
            team = value.get("teamName") or ""
            required = "required" if value.get("required") else "checked when present"
            words.append(f"{label}: {required}" + (f" (team {team})" if team else ""))
        elif isinstance(value, bool):
            words.append(label if value else f"{label}: off")
        elif key in ("connectTimeout", "tlsTimeout", "tcpKeepAlive", "keepAliveTimeout") and isinstance(value, int):
            words.append(f"{label}: {_seconds_text(value)}")
        else:
            words.append(f"{label}: {value}")
    return words


class RotateForm(forms.Form):
    disconnect = forms.BooleanField(
        required=False,
        label="Also disconnect connectors using the old token",
        help_text="Without this, running connectors stay connected until they restart.",
    )


class DeleteTunnelForm(forms.Form):
    cascade = forms.BooleanField(
        required=False, label="Disconnect its connectors and delete anyway", help_text="Public hostnames go with it."
    )


class NotificationForm(forms.Form):
    name = forms.CharField(max_length=120)
    kind = forms.ChoiceField(choices=[("email", "Email"), ("webhook", "Webhook")], label="Deliver by")
    emails = forms.CharField(required=False, help_text="Addresses separated by commas (for email).")
    url = forms.URLField(required=False, label="Webhook URL", assume_scheme="https")
    secret = forms.CharField(
        required=False,
        label="Signing secret",
        widget=forms.PasswordInput(render_value=True),
        help_text="At least 16 characters; requests carry X-ZT-Signature: sha256=HMAC(secret, timestamp.body).",
    )
    health = forms.BooleanField(required=False, initial=True, label="Tunnel health changes")
    lifecycle = forms.BooleanField(required=False, initial=True, label="Tunnel created or deleted")
