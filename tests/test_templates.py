"""The default policy's comment templates, in both locales, render as readable Markdown."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from config.loader import load_policy
from config.schema import Locale, MessageKind
from policies.render import render

POLICY = load_policy()
STAGE = {"title": "Planning", "sop": "S2.2", "clause": "Write a plan."}
VIOLATION = {
    "rule_id": "owner-assigned",
    "sop": "S2.3",
    "clause": "Assign.",
    "requirement": "An owner",
    "details": [],
}
VARIABLES: dict[str, dict[str, Any]] = {
    "transition-rejected": {
        "undone": True,
        "actor": "dana",
        "from_state": "Triage",
        "to_state": "In progress",
        "entry_from": ["Planning"],
        "skipped": [STAGE],
        "violations": [VIOLATION],
        "allowed": ["Diagnosis"],
    },
    "intake-missing": {"missing": ["Customer"], "invalid": []},
    "priority-set": {
        "level": "P2",
        "impact": "Minor",
        "urgency": "High",
        "tier": "Key",
        "raised": True,
        "applied": False,
    },
    "priority-override": {"level": "P1", "actor": "dana", "computed": "P3"},
    "checklist-created": {
        "checklist": "Self-check",
        "items": ["The problem is solved"],
        "created": True,
        "item_kind": "sub-task",
    },
    "sla-warning": {
        "target": "first response",
        "kind": "first-response",
        "level": "P1",
        "percent": "75%",
        "deadline": "Nov 24, 2026, 10:15 AM (China Time)",
        "remaining": "3 minutes",
        "who": "@dana",
    },
    "satisfaction": {"reporter": "carol"},
    "low-rating": {"score": 2, "escalation": "@acme/leads"},
    "plan-changed": {
        "actor": "dana",
        "approval_label": "plan/approved",
        "approved": True,
        "waiver_labels": [],
        "changed_label": "plan/changed",
        "during_work": True,
    },
    "command-answer": {
        "command": "delay",
        "actor": "dana",
        "problem": "usage",
        "by": ["team-members"],
        "not_by": [],
        "states": [],
        "usage": '/delay YYYY-MM-DD "reason"',
    },
    "label-refused": {
        "undone": True,
        "actor": "dana",
        "label": "plan/approved",
        "by": ["approvers"],
        "not_by": ["assignee", "author-of-plan"],
        "requirement": "A high-risk plan passes an internal review",
    },
    "status-unmapped": {"status": "Paused", "state": "Diagnosis", "actor": "dana"},
    "receipt": {
        "reason": {"impact": "Minor", "urgency": "High", "tier": "Key", "raised": True},
        "level": "P2",
        "assumed": False,
        "next_steps": ["Triage"],
        "deadlines": [{"target": "first response", "deadline": "Nov 24, 2026, 10:15 AM (China Time)"}],
    },
    "sla-breached": {
        "target": "resolution",
        "kind": "resolution",
        "level": "P2",
        "deadline": "Nov 24, 2026, 6:00 PM (China Time)",
        "overdue": "5 minutes",
        "who": "@dana",
        "escalation": "@acme/leads",
        "delay_notice": True,
        "new_date": "Dec 20, 2026",
    },
    "delay-refused": {
        "actor": "dana",
        "problems": ["internal", "late"],
        "deadline": "Nov 24, 2026, 6:00 PM (China Time)",
        "new_date": "Dec 20, 2026",
        "command": "",
    },
}


CLOSING = {"en": "\n\nRule `", "zh-CN": "\n\n规则 `"}
NEXT_STAGES = {
    "en": "\n\nFrom **Triage** the next stage can be: Diagnosis.",
    "zh-CN": "\n\n从 **Triage** 可进入的下一阶段：Diagnosis。",
}


@pytest.mark.parametrize("locale", get_args(Locale))
@pytest.mark.parametrize("kind", get_args(MessageKind))
def test_every_template_closes_with_a_paragraph_of_its_own(kind: MessageKind, locale: Locale) -> None:
    policy = POLICY.model_copy(update={"locale": locale})

    text = render(policy, kind, POLICY.priority, **VARIABLES[kind])

    closing = NEXT_STAGES[locale] if kind == "transition-rejected" else CLOSING[locale] + POLICY.priority.id
    assert closing in text
    assert "{{" not in text and "{%" not in text
    assert "\n\n\n" not in text, "no empty paragraphs"


def test_the_chinese_templates_are_in_chinese() -> None:
    policy = POLICY.model_copy(update={"locale": "zh-CN"})
    for kind in get_args(MessageKind):
        english = render(POLICY, kind, POLICY.priority, **VARIABLES[kind]).splitlines()[0]
        chinese = render(policy, kind, POLICY.priority, **VARIABLES[kind]).splitlines()[0]
        assert english != chinese and any("\u4e00" <= ch <= "\u9fff" for ch in chinese), kind
