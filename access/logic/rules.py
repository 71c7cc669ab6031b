"""Rule selectors in Cloudflare's JSON shapes, parsed once into `Rule`s, and how a rule set matches a subject.

A rule set matches when at least one `include` rule matches, every `require` rule matches and no `exclude` rule
matches. Identity selectors (email, email domain, email list, login method) are decided at login from the
identity; network ones (IP, IP list, country, service tokens) on every request.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from access.logic.ipsets import IPAddress, IPNetwork, IPSet

# selector -> (the key inside its object, or None for an empty object)
SELECTORS: dict[str, str | None] = {
    "email": "email",
    "email_domain": "domain",
    "everyone": None,
    "ip": "ip",
    "group": "id",
    "service_token": "token_id",
    "any_valid_service_token": None,
    "login_method": "id",
    "email_list": "id",
    "ip_list": "id",
    "geo": "country_code",
}
IDENTITY_SELECTORS = frozenset({"email", "email_domain", "email_list", "login_method"})
REFERENCE_SELECTORS = {
    "group": "group",
    "service_token": "service token",
    "login_method": "identity provider",
    "email_list": "list",
    "ip_list": "list",
}
MAX_RULES_PER_SET = 1000
MAX_GROUP_DEPTH = 4

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,253}$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


@dataclass(frozen=True)
class Rule:
    kind: str
    value: str = ""
    network: IPNetwork | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, dict[str, str]]:
        key = SELECTORS[self.kind]
        return {self.kind: {} if key is None else {key: self.value}}

    @property
    def is_identity(self) -> bool:
        return self.kind in IDENTITY_SELECTORS

    def describe(self) -> str:
        labels = {
            "email": "email is {}",
            "email_domain": "email ends in @{}",
            "everyone": "everyone",
            "ip": "IP in {}",
            "group": "member of group {}",
            "service_token": "service token {}",
            "any_valid_service_token": "any valid service token",
            "login_method": "signed in with {}",
            "email_list": "email in list {}",
            "ip_list": "IP in list {}",
            "geo": "country is {}",
        }
        return labels[self.kind].format(self.value)


class RuleError(ValueError):
    """A rule that is not one of the supported selectors, or whose value is malformed."""


def parse_rule(raw: Any) -> Rule:
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise RuleError('A rule is an object with one selector, e.g. {"email": {"email": "ana@example.com"}}.')
    kind, body = next(iter(raw.items()))
    if kind not in SELECTORS:
        supported = ", ".join(sorted(SELECTORS))
        raise RuleError(f"“{kind}” is not a supported selector (supported: {supported}).")
    key = SELECTORS[kind]
    if not isinstance(body, Mapping):
        raise RuleError(f"{kind}: the selector's value is an object.")
    if key is None:
        return Rule(kind)
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RuleError(f"{kind}: “{key}” is required and must be a non-empty string.")
    value = value.strip()
    if len(value) > 320:
        raise RuleError(f"{kind}: “{key}” is too long.")
    if kind == "email":
        if not _EMAIL.match(value):
            raise RuleError(f"email: “{value}” is not an email address.")
        return Rule(kind, value.lower())
    if kind == "email_domain":
        domain = value.lstrip("@").rstrip(".").lower()
        if not _DOMAIN.match(domain):
            raise RuleError(f"email_domain: “{value}” is not a domain (e.g. “example.com”).")
        return Rule(kind, domain)
    if kind == "ip":
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise RuleError(f"ip: “{value}” is not an IP address or CIDR range (e.g. 203.0.113.0/24).") from None
        return Rule(kind, str(network), network)
    if kind == "geo":
        code = value.upper()
        if not _COUNTRY.match(code):
            raise RuleError(f"geo: “{value}” is not a two-letter country code (ISO 3166-1 alpha-2).")
        return Rule(kind, code)
    return Rule(kind, value)


def parse_rules(raw: Any, *, field_name: str, required: bool = False) -> list[Rule]:
    """A list of rules; RuleError names the field and the position of a bad entry."""
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise RuleError(f"{field_name}: a list of rules.")
    if required and not raw:
        raise RuleError(f"{field_name}: at least one rule is required.")
    if len(raw) > MAX_RULES_PER_SET:
        raise RuleError(f"{field_name}: at most {MAX_RULES_PER_SET} rules.")
    rules = []
    for position, item in enumerate(raw):
        try:
            rules.append(parse_rule(item))
        except RuleError as exc:
            raise RuleError(f"{field_name}[{position}]: {exc}") from None
    return rules


@dataclass(frozen=True)
class Subject:
    """Who asks, as far as is known: the identity (at login, or from a session token), the network facts of this
    request, and a service token that was presented and found valid."""

    email: str | None = None
    login_method: str | None = None
    ip: IPAddress | None = None
    country: str | None = None
    service_token_id: str | None = None

    @property
    def email_domain(self) -> str | None:
        return self.email.rpartition("@")[2] if self.email else None


@dataclass(frozen=True)
class RuleSet:
    include: tuple[Rule, ...] = ()
    require: tuple[Rule, ...] = ()
    exclude: tuple[Rule, ...] = ()

    def rules(self) -> tuple[Rule, ...]:
        return self.include + self.require + self.exclude


@dataclass
class Directory:
    """What references resolve to: groups by id, email lists (lower-case addresses) and IP lists by id."""

    groups: dict[str, RuleSet] = field(default_factory=dict)
    email_lists: dict[str, frozenset[str]] = field(default_factory=dict)
    ip_lists: dict[str, IPSet] = field(default_factory=dict)


def rule_matches(rule: Rule, subject: Subject, directory: Directory, depth: int = 0) -> bool:
    kind = rule.kind
    if kind == "everyone":
        return True
    if kind == "email":
        return subject.email is not None and subject.email.lower() == rule.value
    if kind == "email_domain":
        return subject.email_domain is not None and subject.email_domain.lower() == rule.value
    if kind == "ip":
        return subject.ip is not None and rule.network is not None and subject.ip in rule.network
    if kind == "geo":
        return subject.country is not None and subject.country.upper() == rule.value
    if kind == "service_token":
        return subject.service_token_id is not None and subject.service_token_id == rule.value
    if kind == "any_valid_service_token":
        return subject.service_token_id is not None
    if kind == "login_method":
        return subject.login_method is not None and subject.login_method == rule.value
    if kind == "email_list":
        members = directory.email_lists.get(rule.value)
        return bool(members) and subject.email is not None and subject.email.lower() in members  # type: ignore[operator]
    if kind == "ip_list":
        networks = directory.ip_lists.get(rule.value)
        return subject.ip is not None and networks is not None and subject.ip in networks
    if kind == "group":
        group = directory.groups.get(rule.value)
        if group is None or depth >= MAX_GROUP_DEPTH:
            return False  # a deleted group, or a loop of groups, admits nobody
        return match_rule_set(group, subject, directory, depth + 1).matched
    return False


@dataclass(frozen=True)
class SetMatch:
    matched: bool
    include: Rule | None = None  # the include rule that matched
    failed_require: Rule | None = None
    excluded_by: Rule | None = None

    def explain(self) -> str:
        if self.matched:
            return f"included by “{self.include.describe()}”" if self.include else "matched"
        if self.excluded_by is not None:
            return f"excluded by “{self.excluded_by.describe()}”"
        if self.failed_require is not None:
            return f"requirement not met: “{self.failed_require.describe()}”"
        return "no include rule matched"


def match_rule_set(rules: RuleSet, subject: Subject, directory: Directory, depth: int = 0) -> SetMatch:
    included = next((rule for rule in rules.include if rule_matches(rule, subject, directory, depth)), None)
    if included is None:
        return SetMatch(False)
    failed = next((rule for rule in rules.require if not rule_matches(rule, subject, directory, depth)), None)
    if failed is not None:
        return SetMatch(False, include=included, failed_require=failed)
    excluded = next((rule for rule in rules.exclude if rule_matches(rule, subject, directory, depth)), None)
    if excluded is not None:
        return SetMatch(False, include=included, excluded_by=excluded)
    return SetMatch(True, include=included)


def uses_identity(rules: RuleSet, directory: Directory, depth: int = 0) -> Rule | None:
    """The first identity selector in the set (following groups), or None: Bypass policies may not use them."""
    for rule in rules.rules():
        if rule.is_identity:
            return rule
        if rule.kind == "group" and depth < MAX_GROUP_DEPTH:
            group = directory.groups.get(rule.value)
            if group is not None:
                inner = uses_identity(group, directory, depth + 1)
                if inner is not None:
                    return inner
    return None


def references(rules: Sequence[Rule]) -> dict[str, set[str]]:
    """Ids referenced by the rules, by selector kind (groups, service tokens, identity providers, lists)."""
    found: dict[str, set[str]] = {}
    for rule in rules:
        if rule.kind in REFERENCE_SELECTORS:
            found.setdefault(rule.kind, set()).add(rule.value)
    return found
