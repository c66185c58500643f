"""The one Jinja2 environment that every comment template is parsed and rendered with, and the
catalogue of the variables each kind of comment receives.

Templates come from the policy file, which admins edit, so they run sandboxed; an unknown
variable is an error rather than an empty string, so a typo never reaches a tracker silently.

The catalogue is the contract between the policy file and the engine: `policies.render` refuses
to render a kind with any other set of names, and `config.template_checks` renders every template
of a policy with the sample values below, so a template that validates renders at run time.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from config.schema import MessageKind


@cache
def template_environment() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False
    )


# Every template receives these, for the rule it speaks for (`policies.render.rule_variables`).
RULE_VARIABLES: Mapping[str, tuple[Any, ...]] = {
    "rule_id": ("owner-assigned",),
    "sop": ("S2.3",),
    "clause": ("A named owner is assigned.",),
}

_STAGE = {"title": "Planning", "sop": "S2.2", "clause": "Write a plan."}
_VIOLATIONS = [
    {
        "rule_id": "intake-complete",
        "sop": "S1.2",
        "clause": "Collect the required information.",
        "requirement": "The required information is given",
        "details": ["Customer", "Impact"],
    },
    {
        "rule_id": "owner-assigned",
        "sop": "S2.3",
        "clause": "A named owner is assigned.",
        "requirement": "Someone is assigned",
        "details": [],
    },
]
_REASON = {"level": "P2", "impact": "Minor", "urgency": "High", "tier": "Key", "raised": True}
_DEADLINES = [
    {"target": "first response", "deadline": "2026-11-24 10:15 (Asia/Shanghai)"},
    {"target": "resolution", "deadline": "2026-11-25 18:00 (Asia/Shanghai)"},
]

# Each kind's own variables and the values to render them with: one value where templates only
# print it, several where templates branch on it (true and false, empty and non-empty lists).
# Values have the shapes the engine passes: strings, booleans, numbers, lists of strings or dicts.
KIND_VARIABLES: Mapping[MessageKind, Mapping[str, tuple[Any, ...]]] = {
    "transition-rejected": {
        "undone": (True, False),
        "actor": ("dana",),
        "from_state": ("Triage",),
        "to_state": ("In progress",),
        "entry_from": ([], ["Planning", "Diagnosis"]),
        "skipped": ([], [_STAGE]),
        "violations": ([], _VIOLATIONS),
        "allowed": ([], ["Diagnosis", "Waiting for customer"]),
    },
    "intake-missing": {"missing": ([], ["Customer", "Impact"])},
    "priority-set": {
        "level": ("P2",),
        "impact": ("Minor",),
        "urgency": ("High",),
        "tier": ("Key", "-"),
        "raised": (True, False),
        "applied": (True, False),
    },
    "priority-override": {"level": ("P1",), "actor": ("dana",), "computed": ("", "P3", "P1")},
    "checklist-created": {
        "checklist": ("Self-check",),
        "item_kind": ("sub-issue", "sub-task"),
        "items": (["The problem is solved", "The fix is documented"],),
        "created": (True, False),
    },
    "sla-warning": {
        "target": ("first response",),
        "kind": ("first-response", "resolution"),
        "level": ("P1",),
        "deadline": ("2026-11-24 10:15 (Asia/Shanghai)",),
        "who": ("", "@dana"),
        "percent": (75,),
        "remaining": ("3 min",),
    },
    "sla-breached": {
        "target": ("resolution",),
        "kind": ("first-response", "resolution"),
        "level": ("P2",),
        "deadline": ("2026-11-24 18:00 (Asia/Shanghai)",),
        "who": ("", "@dana"),
        "overdue": ("", "1 h 5 min"),
        "escalation": ("", "@acme/leads"),
    },
    "receipt": {
        "reason": (None, _REASON, {**_REASON, "tier": "", "raised": False}),
        "level": ("P2",),
        "assumed": (True, False),
        "next_steps": ([], ["Triage", "Waiting for customer"]),
        "deadlines": ([], _DEADLINES),
    },
    "satisfaction": {"reporter": ("", "carol")},
}


def variable_names(kind: MessageKind) -> frozenset[str]:
    """Every name a template of this kind may use (its own and the rule's)."""
    return frozenset(KIND_VARIABLES[kind]) | frozenset(RULE_VARIABLES)


def sample_variables(kind: MessageKind) -> Iterator[dict[str, Any]]:
    """Every combination of the kind's sample values, so each branch of a template is taken."""
    samples = {**RULE_VARIABLES, **KIND_VARIABLES[kind]}
    for values in itertools.product(*samples.values()):
        yield dict(zip(samples, values, strict=True))
