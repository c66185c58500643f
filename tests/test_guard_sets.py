"""Guard sets: guards named once (`workflow.guard_sets`) and used on several transitions (`- use:`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.loader import PolicyError, parse_policy
from config.schema import LabelGuard

TEXT = (Path(__file__).parents[1] / "config" / "sop.yaml").read_text(encoding="utf-8")


def _guard_ids(text: str, transition: str) -> list[str]:
    policy = parse_policy(text)
    found = next(t for t in policy.workflow.transitions if t.id == transition)
    return [g.id for g in found.guards]


def test_a_set_stands_for_its_guards_in_order_wherever_it_is_used() -> None:
    expected = [
        "plan-before-work",
        "plan-reviewed",
        "high-risk-plan-reviewed",
        "owner-before-work",
        "prepared-before-work",
    ]

    assert _guard_ids(TEXT, "start-work") == [*expected, "customer-impact-confirmed"]
    assert _guard_ids(TEXT, "customer-replied-during-work") == [
        *expected,
        "customer-confirmed-before-resuming",
    ]
    assert _guard_ids(TEXT, "customer-confirmed") == ["customer-confirmation-recorded", *expected]


def test_a_change_to_the_set_changes_every_transition_that_uses_it() -> None:
    text = TEXT.replace(
        "        label: plan/approved\n        by: approvers\n",
        "        label: plan/reviewed\n        by: approvers\n",
        1,
    )

    policy = parse_policy(text)

    labels = {
        t.id: g.label
        for t in policy.workflow.transitions
        for g in t.guards
        if isinstance(g, LabelGuard) and g.id == "plan-reviewed"
    }
    assert labels == {
        name: "plan/reviewed" for name in ("start-work", "customer-confirmed", "customer-replied-during-work")
    }


def test_an_unknown_set_is_refused() -> None:
    with pytest.raises(PolicyError) as refused:
        parse_policy(TEXT.replace("        - use: plan-ready\n", "        - use: plan-redy\n", 1))

    assert "unknown guard set 'plan-redy' (known: plan-ready)" in str(refused.value)


def test_two_different_guards_with_one_id_are_still_refused() -> None:
    text = TEXT.replace("        - id: customer-impact-confirmed\n", "        - id: owner-before-work\n", 1)

    with pytest.raises(PolicyError) as refused:
        parse_policy(text)

    assert "rule id 'owner-before-work' is used by more than one rule" in str(refused.value)
