"""The policy tester: for a hypothetical visitor, every application's decision and the policy and rule behind it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from access.logic.engine import DECISION_LABELS, PolicyDef, Verdict, evaluate
from access.logic.rules import Directory, Subject


@dataclass(frozen=True)
class AppTest:
    app_id: str
    app_name: str
    verdict: Verdict


def trace_data(verdict: Verdict) -> dict[str, Any]:
    return {
        "outcome": verdict.outcome.value,
        "admitted": verdict.admitted,
        "policy": _policy_ref(verdict.policy),
        "rule": verdict.rule.to_json() if verdict.rule else None,
        "explanation": verdict.explain(),
        "trace": [
            {
                **(_policy_ref(step.policy) or {}),
                "evaluated": step.evaluated,
                "matched": step.matched,
                "note": step.note,
            }
            for step in verdict.trace
        ],
    }


def _policy_ref(policy: PolicyDef | None) -> dict[str, Any] | None:
    if policy is None:
        return None
    return {
        "id": policy.id,
        "name": policy.name,
        "decision": policy.decision.value,
        "action": DECISION_LABELS[policy.decision],
        "precedence": policy.precedence,
    }


def evaluate_apps(apps: list[Any], subject: Subject, directory: Directory) -> list[AppTest]:
    """`apps`: compiled applications (each with `.id`, `.name`, `.policies` in evaluation order)."""
    return [AppTest(app.id, app.name, evaluate(list(app.policies), subject, directory, explain=True)) for app in apps]
