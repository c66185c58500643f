"""Guard sets: guards named once (`workflow.guard_sets`) and used on several transitions (`- use:`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from config.loader import PolicyError, parse_policy
from config.schema import LabelGuard

TEXT = (Path(__file__).parents[1] / "config" / "sop.yaml").read_text(encoding="utf-8")


def _guard_ids(text: str, transition: str) -> list[str]:
    policy = parse_policy(text)
    found = next(t for t in policy.workflow.transitions if t.id == transition)
    return [g.id for g in found.guards]


def test_a_set_stands_for_its_guards_in_order_wherever_it_is_used() -> None:
    expected = [
        "plan-written",
        "plan-reviewed",
        "high-risk-plan-reviewed",
        "owner-assigned",
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

    assert "unknown guard set 'plan-redy' (known: owner, plan-ready, plan-written)" in str(refused.value)


def test_two_different_guards_with_one_id_are_still_refused() -> None:
    text = TEXT.replace("        - id: customer-impact-confirmed\n", "        - id: owner-assigned\n", 1)

    with pytest.raises(PolicyError) as refused:
        parse_policy(text)

    assert "rule id 'owner-assigned' is used by more than one rule" in str(refused.value)


def test_a_set_can_use_another_and_each_guard_is_written_once() -> None:
    policy = parse_policy(TEXT)

    assert _guard_ids(TEXT, "start-diagnosis") == ["intake-complete", "priority-set", "owner-assigned"]
    assert _guard_ids(TEXT, "ask-customer-confirmation") == ["plan-written"]
    written = [g["id"] for guards in _written_guard_sets().values() for g in guards if "id" in g]
    assert len(written) == len(set(written)) and "owner-assigned" in written
    assert policy.workflow.guard_sets["plan-ready"][0].id == "plan-written"


def _written_guard_sets() -> dict[str, list[dict[str, object]]]:
    sets: dict[str, list[dict[str, object]]] = yaml.safe_load(TEXT)["workflow"]["guard_sets"]
    return sets


def test_a_set_that_uses_itself_is_refused() -> None:
    text = TEXT.replace("      - use: plan-written\n", "      - use: plan-ready\n", 1)

    with pytest.raises(PolicyError) as refused:
        parse_policy(text)

    assert "guard set 'plan-ready' uses itself (through plan-ready -> plan-ready)" in str(refused.value)
