"""Field validators shared by models, forms and serializers."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

# Names that would collide with our own hosts, look official, or confuse users.
RESERVED_TEAM_NAMES = frozenset(
    {
        "admin",
        "administrator",
        "api",
        "app",
        "apps",
        "auth",
        "cdn-cgi",
        "dash",
        "dashboard",
        "docs",
        "edge",
        "help",
        "internal",
        "localhost",
        "login",
        "logout",
        "mail",
        "root",
        "security",
        "signin",
        "sso",
        "static",
        "status",
        "support",
        "system",
        "team",
        "test",
        "www",
        "zero-trust",
    }
)


def validate_team_name(value: str) -> None:
    if value != value.lower():
        raise ValidationError("Team names are lower case.", code="team_name_case")
    if not 1 <= len(value) <= 63:
        raise ValidationError("A team name is 1 to 63 characters long.", code="team_name_length")
    if not _LABEL.match(value):
        raise ValidationError(
            "Use only letters a–z, digits and hyphens, not starting or ending with a hyphen.",
            code="team_name_chars",
        )
    if value in RESERVED_TEAM_NAMES:
        raise ValidationError(f"“{value}” is reserved; choose another team name.", code="team_name_reserved")


def normalise_hostname(value: str) -> str:
    """Lower-case, strip a trailing dot and convert internationalised names to their punycode (A-label) form."""
    name = (value or "").strip().rstrip(".").lower()
    if not name:
        raise ValidationError("Enter a domain name.", code="hostname_empty")
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValidationError(f"“{value}” is not a valid domain name.", code="hostname_idna") from None
    return name


def validate_domain_name(value: str, *, allow_wildcard: bool = False) -> None:
    """A fully qualified DNS name: at least two labels, each a valid label, total at most 253 characters."""
    if len(value) > 253:
        raise ValidationError("A domain name is at most 253 characters long.", code="hostname_length")
    if ":" in value:
        raise ValidationError("Domain names cannot contain a port.", code="hostname_port")
    labels = value.split(".")
    if len(labels) < 2:
        raise ValidationError(
            f"“{value}” is not a fully qualified domain name (e.g. example.com).", code="hostname_fqdn"
        )
    for index, label in enumerate(labels):
        if allow_wildcard and index == 0 and label == "*":
            continue
        if not _LABEL.match(label):
            raise ValidationError(f"“{value}” is not a valid domain name.", code="hostname_invalid")
    if labels[-1].isdigit():
        raise ValidationError("IP addresses are not domain names.", code="hostname_ip")


def reserved_by_installation(name: str) -> str | None:
    """Why `name` (a zone or a DNS name) cannot belong to a tenant, or None. The control plane's own hosts, its
    team domains (`*.AUTH_DOMAIN`) and the tunnel CNAME domain are the installation's."""
    from django.conf import settings

    for domain in (settings.AUTH_DOMAIN, settings.TUNNEL_DOMAIN):
        if domain and (name == domain or name.endswith("." + domain) or domain.endswith("." + name)):
            return f"{name} overlaps {domain}, which this installation uses itself."
    if name in getattr(settings, "CONTROL_PLANE_HOSTS", []):
        return f"{name} is the control plane's own address."
    return None
