"""S5.2: a rating of 2 or less from the reporter labels the issue and brings it to the escalation contact."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import pytest
import responses

from config.loader import load_policy
from policies.engine import evaluate
from policies.models import (
    Actor,
    ChangeLabels,
    Comment,
    Event,
    EventKind,
    IssueRef,
    IssueSnapshot,
    PostComment,
)
from tests.conftest import fixture_json
from tests.engine_support import NOW, ref_for
from tests.jira_support import CLOUD, adf_text, fake_for
from tests.jira_support import service as jira_service
from tests.test_commands import REPORTER, _jira_comment

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


def test_jira_a_rating_delivered_twice_is_followed_up_once(
    no_network: responses.RequestsMock, tmp_path: Path
) -> None:
    """Jira sends a comment as `comment_created` and as an `issue_commented` update (both subscribed)."""
    created = copy.deepcopy(fixture_json("jira", "mattermost__webhook-issue-created.json"))
    fake = fake_for(no_network, CLOUD, created)
    sopguard = jira_service(tmp_path, CLOUD)
    sopguard.deliver(created, "created")
    rating = _jira_comment(fake, "1", REPORTER, "Done")
    rating["issue"]["fields"]["status"]["statusCategory"] = {"key": "done"}
    as_update = copy.deepcopy(rating)
    as_update.update(
        webhookEvent="jira:issue_updated",
        issue_event_type_name="issue_commented",
        user=rating["comment"]["author"],
        changelog={"items": []},
    )

    sopguard.deliver(rating, "c-1")
    sopguard.deliver(as_update, "c-2")

    texts = [adf_text(body) for body in fake.our_comments()]
    assert len([t for t in texts if t.startswith("The customer rated this service 1 of 5.")]) == 1
    assert "satisfaction/low" in fake.labels
    followed = sopguard.intake.store.ledger.one(IssueRef("jira", fake.project, fake.key))
    assert followed is not None
    assert [type(e).__name__ for e in followed.timeline].count("Rated") == 1
