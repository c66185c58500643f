"""A delivery older than what sopguard already knows of the issue (a replayed signed body with a new
delivery id, or a genuine late delivery) is recorded as history: it undoes nothing and replaces no
newer state. And the ledger records what happened, not what was planned: an undo the tracker
refused leaves the ledger where the person's change put the issue."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses

from policies.sla import Commented, Phase
from tests.conftest import services_of
from tests.github_support import (
    REF,
    FakeGithub,
    Service,
    form_body,
    issue_payload,
    labelled,
    service,
)

T0 = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)  # Monday 10:00 in Shanghai, a working hour


def _iso(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def minutes(n: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=n)


@pytest.fixture
def github(no_network: responses.RequestsMock) -> Iterator[FakeGithub]:
    fake = FakeGithub(no_network)
    yield fake
    fake.check_against_openapi()


@pytest.fixture
def sopguard(tmp_path: Path) -> Service:
    app = service(tmp_path)
    services_of(app.app).clock = lambda: minutes(30)
    return app


def _at(payload: dict[str, Any], when: dt.datetime) -> dict[str, Any]:
    payload["issue"]["updated_at"] = _iso(when)
    return payload


def _open(sopguard: Service, github: FakeGithub) -> None:
    body = form_body(Impact="Degraded service", Urgency="High")
    opened = issue_payload("opened", labels=[], body=body, issue={"created_at": _iso(T0)})
    sopguard.deliver(_at(opened, T0), "opened")


def test_an_older_label_event_replayed_after_a_move_to_waiting_leaves_the_issue_as_it_was(
    sopguard: Service, github: FakeGithub
) -> None:
    _open(sopguard, github)
    triage = _at(labelled(github, "status/triage"), minutes(1))
    sopguard.deliver(triage, "triage")
    github.labels.remove("status/triage")
    waiting = _at(labelled(github, "status/waiting-for-customer"), minutes(5))
    sopguard.deliver(waiting, "waiting")
    store = sopguard.intake.store
    before = store.ledger.one(REF)
    assert before is not None and store.ledger.memory(REF).last_state == "waiting-for-customer"
    labels_on_github = list(github.labels)
    github.mock.calls.reset()

    replayed = json.loads(json.dumps(triage))  # the same signed body, under a new delivery id
    assert sopguard.deliver(replayed, "replayed-later") == 1

    assert github.calls() == [] and github.labels == labels_on_github
    assert store.ledger.memory(REF).last_state == "waiting-for-customer"
    after = store.ledger.one(REF)
    assert after is not None and after.facts == before.facts and after.timeline == before.timeline
    (entry,) = [e for e in store.audit.entries() if e.delivery_id == "replayed-later"]
    assert entry.outcome == "no action" and "recorded as history" in entry.reasons[0]
    clocks = services_of(sopguard.app).clocks(REF, after.timeline, minutes(20))
    assert {c.phase for c in clocks} == {Phase.PAUSED}  # the pause did not end


def test_a_late_comment_is_still_counted_once_even_when_replayed(
    sopguard: Service, github: FakeGithub
) -> None:
    """A comment delivered late is still a fact for the first-response clock; its replay adds nothing."""
    _open(sopguard, github)
    sopguard.deliver(_at(labelled(github, "status/triage"), minutes(10)), "triage")
    comment = issue_payload("opened", labels=list(github.labels))
    comment["action"] = "created"
    comment["comment"] = {
        "id": 777,
        "body": "We are looking at it.",
        "user": {"login": "dana", "id": 9, "type": "User"},
        "author_association": "MEMBER",
        "created_at": _iso(minutes(4)),
        "updated_at": _iso(minutes(4)),
    }
    _at(comment, minutes(4))

    sopguard.deliver(comment, "late-comment", event="issue_comment")
    sopguard.deliver(json.loads(json.dumps(comment)), "late-comment-replayed", event="issue_comment")

    followed = sopguard.intake.store.ledger.one(REF)
    assert followed is not None
    comments = [e for e in followed.timeline if isinstance(e, Commented)]
    assert [(c.author, c.comment_id) for c in comments] == [("dana", "777")]
    clocks = services_of(sopguard.app).clocks(REF, followed.timeline, minutes(30))
    first_response = next(c for c in clocks if c.kind == "first-response")
    assert first_response.phase is Phase.STOPPED and first_response.stopped_at == minutes(4)


def test_when_github_refuses_the_undo_the_ledger_says_where_the_issue_really_is(
    sopguard: Service, github: FakeGithub
) -> None:
    _open(sopguard, github)
    github.fail("DELETE", "/labels/status%2Fin-progress", (422, {"Content-Type": "application/json"}, "{}"))
    github.fail("POST", "/labels", (422, {"Content-Type": "application/json"}, '{"message": "no"}'))

    sopguard.deliver(_at(labelled(github, "status/in-progress"), minutes(2)), "skip-ahead")

    store = sopguard.intake.store
    assert "status/in-progress" in github.labels  # the person's change stands on GitHub ...
    assert store.ledger.memory(REF).last_state == "in-progress"  # ... and in the ledger
    followed = store.ledger.one(REF)
    assert followed is not None and "status/in-progress" in followed.facts.labels
    comment = list(github.our_comments())[-1]
    assert "was undone" not in comment and "does not follow the service procedure" in comment
