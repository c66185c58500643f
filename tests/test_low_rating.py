"""S5.2: a rating of 2 or less from the reporter labels the issue and brings it to the escalation contact."""

from __future__ import annotations

from dataclasses import replace

import pytest

from config.loader import load_policy
from policies.engine import evaluate
from policies.models import Actor, ChangeLabels, Comment, Event, EventKind, IssueSnapshot, PostComment
from tests.engine_support import NOW, ref_for

POLICY = load_policy()
ESCALATING = POLICY.model_copy(
    update={"sla": POLICY.sla.model_copy(update={"escalation": {"github": "@acme/leads", "jira": "@lead"}})}
)


def _rated(source: str, score: str, by: str = "carol") -> tuple[Event, IssueSnapshot]:
    ref = ref_for("github" if source == "github" else "jira")
    event = Event(
        source=ref.source,
        kinds=frozenset({EventKind.COMMENTED}),
        delivery_id="rate-1",
        actor=Actor(by),
        issue=ref,
        name="comment_created",
        comment=Comment(Actor(by), score, id="31"),
    )
    return event, IssueSnapshot(ref=ref, is_open=False, reporter="carol")


@pytest.mark.parametrize("source", ["github", "jira"])
def test_a_poor_rating_of_the_reporter_is_labelled_and_escalated(source: str) -> None:
    decision = evaluate(ESCALATING, *_rated(source, "2"), NOW)

    label, comment = decision.actions
    assert label == ChangeLabels("ask-for-rating", add=frozenset({"satisfaction/low"}))
    assert isinstance(comment, PostComment)
    escalation = "@acme/leads" if source == "github" else "@lead"
    assert comment.body.startswith(
        f"**The customer rated this service 2 of 5.** {escalation}, please follow up"
    )
    assert [r.passed for r in decision.results] == [False]


@pytest.mark.parametrize("source", ["github", "jira"])
def test_a_good_rating_or_someone_elses_number_asks_for_nothing(source: str) -> None:
    assert evaluate(ESCALATING, *_rated(source, "4"), NOW).actions == ()
    assert evaluate(ESCALATING, *_rated(source, "1", by="mallory"), NOW).actions == ()


def test_the_reporter_is_told_by_account_id_where_both_are_known() -> None:
    """Jira Cloud: another account that shows the reporter's name is not the reporter."""
    event, snapshot = _rated("jira", "1")
    same_name = replace(event, comment=Comment(Actor("carol", id="acc-mallory"), "1", id="31"))
    reporter = replace(snapshot, reporter_id="acc-carol")

    assert evaluate(ESCALATING, same_name, reporter, NOW).actions == ()
    their_own = replace(event, comment=Comment(Actor("Carol", id="acc-carol"), "1", id="31"))
    assert ChangeLabels("ask-for-rating", add=frozenset({"satisfaction/low"})) in (
        evaluate(ESCALATING, their_own, reporter, NOW).actions
    )
