"""The policy engine: Cloudflare's evaluation order over an application's policies.

Order (docs `access-controls/policies/index.mdx`): first every Bypass and Service Auth policy, by precedence;
then Allow and Block policies by precedence. The first policy that matches decides; nothing matching is a deny.
Allow and Block policies are about an identity, so they are skipped for a subject without one (a visitor who has
not signed in is sent to the login page instead, and decided there).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from access.logic.rules import Directory, Rule, RuleSet, SetMatch, Subject, match_rule_set


class Decision(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    BYPASS = "bypass"
    SERVICE_AUTH = "non_identity"


DECISION_LABELS = {
    Decision.ALLOW: "Allow",
    Decision.DENY: "Block",
    Decision.BYPASS: "Bypass",
    Decision.SERVICE_AUTH: "Service Auth",
}
_FIRST_PASS = frozenset({Decision.BYPASS, Decision.SERVICE_AUTH})


@dataclass(frozen=True)
class PolicyDef:
    id: str
    name: str
    decision: Decision
    precedence: int
    rules: RuleSet
    session_duration: timedelta | None = None


class Outcome(StrEnum):
    BYPASS = "bypass"  # forward without any check, and no log line
    SERVICE_AUTH = "service_auth"  # a non-identity policy admitted the request (e.g. a service token)
    ALLOW = "allow"
    DENY = "deny"  # a Block policy matched
    NO_MATCH = "no_match"  # deny by default
    NEEDS_LOGIN = "needs_login"  # no identity yet, and no Bypass / Service Auth policy admitted the request


@dataclass(frozen=True)
class PolicyTrace:
    policy: PolicyDef
    evaluated: bool
    match: SetMatch | None
    note: str

    @property
    def matched(self) -> bool:
        return bool(self.match and self.match.matched)


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    policy: PolicyDef | None = None
    rule: Rule | None = None
    trace: tuple[PolicyTrace, ...] = ()

    @property
    def admitted(self) -> bool:
        return self.outcome in (Outcome.BYPASS, Outcome.SERVICE_AUTH, Outcome.ALLOW)

    def explain(self) -> str:
        if self.policy is None:
            if self.outcome is Outcome.NEEDS_LOGIN:
                return "Sign-in needed: no Bypass or Service Auth policy admits this request without an identity."
            return "Denied by default: no policy matched."
        label = DECISION_LABELS[self.policy.decision]
        rule = f" (rule “{self.rule.describe()}”)" if self.rule else ""
        return f"{label} policy “{self.policy.name}”{rule} decided."


def evaluation_order(policies: Iterable[PolicyDef]) -> list[PolicyDef]:
    ordered = sorted(policies, key=lambda policy: policy.precedence)
    return [p for p in ordered if p.decision in _FIRST_PASS] + [p for p in ordered if p.decision not in _FIRST_PASS]


def evaluate(
    policies: Sequence[PolicyDef], subject: Subject, directory: Directory, *, explain: bool = False
) -> Verdict:
    """Decide for `subject`. With `explain`, every policy is evaluated and traced (the policy tester); the verdict is
    the same either way. `policies` should already be in `evaluation_order` (the caches keep them so)."""
    verdict: Verdict | None = None
    trace: list[PolicyTrace] = []
    for policy in policies:
        if verdict is not None and not explain:
            break
        if policy.decision not in _FIRST_PASS and subject.email is None:
            if explain:
                trace.append(PolicyTrace(policy, False, None, "needs a signed-in identity"))
            continue
        match = match_rule_set(policy.rules, subject, directory)
        if explain:
            note = "decided" if match.matched and verdict is None else match.explain()
            if match.matched and verdict is not None:
                note = "matched, but an earlier policy had decided"
            trace.append(PolicyTrace(policy, True, match, note))
        if match.matched and verdict is None:
            verdict = Verdict(_OUTCOMES[policy.decision], policy, match.include)
    if verdict is None:
        anonymous = subject.email is None and subject.service_token_id is None
        verdict = Verdict(Outcome.NEEDS_LOGIN if anonymous else Outcome.NO_MATCH)
    if explain:
        return Verdict(verdict.outcome, verdict.policy, verdict.rule, tuple(trace))
    return verdict


_OUTCOMES = {
    Decision.ALLOW: Outcome.ALLOW,
    Decision.DENY: Outcome.DENY,
    Decision.BYPASS: Outcome.BYPASS,
    Decision.SERVICE_AUTH: Outcome.SERVICE_AUTH,
}
