"""Template filters of the Access pages."""

from __future__ import annotations

from typing import Any

from django import template

from access.forms import REFERENCE_SELECTORS, SESSION_DURATIONS, RuleNames
from access.logic.rules import Rule, RuleError, parse_rule

register = template.Library()


@register.filter
def describe_rule(raw: Any, directory: RuleNames | None = None) -> str:
    """`{"email": {"email": "ana@example.com"}}` → "email is ana@example.com"; ids of groups, lists, tokens and
    login methods are shown by name."""
    try:
        rule = parse_rule(raw)
    except RuleError:
        return str(raw)
    if directory is not None and rule.kind in REFERENCE_SELECTORS:
        rule = Rule(rule.kind, f"“{directory.name(rule.kind, rule.value)}”")
    return rule.describe()


@register.filter
def duration_label(value: str) -> str:
    """ "168h" → "1 week"; durations set to something else through the API are shown as they are."""
    return dict(SESSION_DURATIONS).get(value, value)
