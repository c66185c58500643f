"""GitHub end to end: signed delivery -> queue -> engine -> GitHub connector -> HTTP (a fake GitHub on
`responses`). Each test asserts the exact requests, the issue as GitHub then holds it, and the comment.
Every request is checked against GitHub's OpenAPI description. Counts exclude the one-time `GET /user`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses

from config.loader import load_policy
from tests.github_support import (
    BOT,
    REF,
    REPO,
    FakeGithub,
    Reply,
    Service,
    add_checklist,
    done_then,
    form_body,
    issue_payload,
    labelled,
    put_in_state,
)

POLICY = load_policy()
ISSUE = f"/repos/{REPO}/issues/1"

# The preparation's items (made in planning, S3.1) and the self-check's (made entering verification).
PREPARED_AND_SELF_CHECKED = sum(
    len(checklist.items)
    for checklist in load_policy().checklists
    if checklist.id in ("preparation", "self-check")
)


@pytest.fixture
def github(no_network: responses.RequestsMock) -> Iterator[FakeGithub]:
    fake = FakeGithub(no_network)
    yield fake
    fake.check_against_openapi()  # every request of every test here


# --- intake (S1.2) -----------------------------------------------------------------------------


def test_open_with_missing_fields_asks_once_then_thanks_when_supplied(
    sopguard: Service, github: FakeGithub
) -> None:
    sopguard.deliver(issue_payload("opened", labels=[], body=""), "open-1")

    assert github.calls() == [  # a brand-new issue has no comment of ours yet: nothing is read first
        "POST " + ISSUE + "/labels",
        "POST " + ISSUE + "/comments",
        "POST " + ISSUE + "/comments",
    ]
    assert set(github.labels) == {"needs-info", "status/new"}
    asked, receipt = github.our_comments()
    assert asked.startswith("**Some required information is missing.**")
    assert receipt.startswith("**Received.** This request is handled as **P4** until its priority is set.")
    assert "- Customer\n" in asked and "<!-- sopguard:intake-required-fields -->" in asked

    github.mock.calls.reset()
    sopguard.deliver(issue_payload("opened", labels=[], body=""), "open-1")  # GitHub redelivers it
    assert github.calls() == []

    sopguard.deliver(issue_payload("edited", labels=list(github.labels), body=form_body()), "edit-1")

    assert github.calls() == [  # the journal knows both comments: edited in place, nothing listed
        "POST " + ISSUE + "/labels",
        "DELETE " + ISSUE + "/labels/needs-info",
        "PATCH " + f"/repos/{REPO}/issues/comments/{github.comments[0]['id']}",
        "PATCH " + f"/repos/{REPO}/issues/comments/{github.comments[1]['id']}",
    ]
    assert "needs-info" not in github.labels and "priority/P4" in github.labels
    intake, receipt = github.our_comments()
    assert intake.startswith("**All required information is now present.**")
    assert receipt.startswith(
        '**Received.** This request is handled as **P4**, from impact "Minor", urgency "Low"'
    )


# --- priority (S1.3) ---------------------------------------------------------------------------


def test_priority_is_labelled_on_open_and_a_persons_choice_is_kept(
    sopguard: Service, github: FakeGithub
) -> None:
    body = form_body(**{"Impact": "Business outage", "Urgency": "High", "Customer tier": "Standard"})
    sopguard.deliver(issue_payload("opened", labels=[], body=body), "open-p")

    assert github.calls() == ["POST " + ISSUE + "/labels", "POST " + ISSUE + "/comments"]
    assert set(github.labels) == {"status/new", "priority/P1"}

    github.mock.calls.reset()
    sopguard.deliver(labelled(github, "priority/P3", body=body), "person-p3")

    receipt_id = github.comments[0]["id"]
    assert github.calls() == [  # only the computed label goes; the journal knows the receipt
        "DELETE " + ISSUE + "/labels/priority%2FP1",
        "POST " + ISSUE + "/comments",
        "PATCH " + f"/repos/{REPO}/issues/comments/{receipt_id}",
    ]
    assert set(github.labels) == {"status/new", "priority/P3"}
    receipt, override = github.our_comments()
    assert override.startswith(
        "**Priority P3** was chosen by @Codertocat; impact and urgency give P1. The choice is kept and recorded."
    )
    assert receipt.startswith("**Received.** This request is handled as **P3**. Next step: Triage.")
    audit = [e for e in sopguard.intake.store.audit.entries() if e.delivery_id == "person-p3"]
    assert any(a["type"] == "RememberManualPriority" and a["level"] == "P3" for e in audit for a in e.actions)

    github.mock.calls.reset()
    sopguard.deliver(issue_payload("edited", labels=list(github.labels), body=body), "edit-after")
    assert github.calls() == []


# --- the lifecycle ------------------------------------------------------------------------------


def test_a_skipped_stage_is_undone_with_one_comment(sopguard: Service, github: FakeGithub) -> None:
    put_in_state(sopguard, github, "triage", "priority/P2")

    sopguard.deliver(labelled(github, "status/in-progress"), "skip-1")

    # The person's label is taken off (nothing else is touched); the issue predates the journal, so
    # its comments are looked at once before ours is posted.
    assert github.calls() == [
        "DELETE " + ISSUE + "/labels/status%2Fin-progress",
        "POST " + ISSUE + "/comments",
    ]
    assert set(github.labels) == {"status/triage", "priority/P2"}
    (comment,) = github.our_comments()
    assert comment.startswith(
        "**This change of stage was undone.**\n@Codertocat moved this issue from **Triage** to **In progress**."
    )
    assert (
        "- Diagnosis (SOP S2.1" in comment and "From **Triage** the next stage can be: Diagnosis" in comment
    )


@pytest.mark.parametrize("order", ["add-new-first", "remove-old-first"])
def test_a_valid_transition_leaves_exactly_one_status_label(
    sopguard: Service, github: FakeGithub, order: str
) -> None:
    put_in_state(sopguard, github, "new")
    if order == "remove-old-first":
        github.labels.remove("status/new")
        sopguard.deliver(issue_payload("unlabeled", labels=[], label={"name": "status/new"}), "rm-1")
        assert github.calls() == []

    # GitHub's `updated_at` moves on with each change; the recorded `unlabeled` delivery is later
    # than the recorded `labeled` one, which would otherwise be judged as history.
    sopguard.deliver(labelled(github, "status/triage", issue={"updated_at": "2019-05-15T15:20:30Z"}), "add-1")

    expected = ["DELETE " + ISSUE + "/labels/status%2Fnew"] if order == "add-new-first" else []
    assert github.calls() == expected
    assert [label for label in github.labels if label.startswith("status/")] == ["status/triage"]
    assert sopguard.intake.store.ledger.memory(REF).last_state == "triage"


def test_entering_verification_creates_the_checklist_as_sub_issues_once(
    sopguard: Service, github: FakeGithub
) -> None:
    put_in_state(sopguard, github, "in-progress")
    add_checklist(github, "preparation")
    body = "### Key steps\n\nRestarted the gateway; error rate back to normal."

    sopguard.deliver(labelled(github, "status/verification", body=body), "verify-1")

    self_check = POLICY.checklist("self-check")
    assert self_check is not None
    created = [f"POST /repos/{REPO}/issues", f"POST {ISSUE}/sub_issues"] * len(self_check.items)
    assert github.calls() == [
        f"GET {ISSUE}/sub_issues",
        f"DELETE {ISSUE}/labels/status%2Fin-progress",
        *created,
        f"POST {ISSUE}/comments",
    ]
    titles = [s["title"] for s in github.sub_issues]
    assert titles[-3:] == [f"Self-check: {item.en}" for item in self_check.items]
    assert all(s["labels"] == [{"name": "sop-checklist"}] for s in github.sub_issues[-3:])
    assert [label for label in github.labels if label.startswith("status/")] == ["status/verification"]
    assert list(github.our_comments())[-1].startswith("**Self-check**: one sub-issue per item was created")
    audit = {
        e.rule_id: e.outcome for e in sopguard.intake.store.audit.entries() if e.delivery_id == "verify-1"
    }
    assert audit["self-check"] == "applied (3 created); applied"

    github.mock.calls.reset()
    sopguard.deliver(labelled(github, "status/verification", body=body), "verify-1")  # redelivered
    assert github.calls() == [] and len(github.sub_issues) == PREPARED_AND_SELF_CHECKED


def test_closing_with_an_open_checklist_item_is_reopened(sopguard: Service, github: FakeGithub) -> None:
    put_in_state(sopguard, github, "acceptance")
    add_checklist(github, "customer-acceptance", open_items=1)
    add_checklist(github, "deliverables")
    github.state = "closed"
    payload = issue_payload("closed", labels=list(github.labels), body="### Root cause\n\nA full disk.")

    sopguard.deliver(payload, "close-1")

    assert github.calls() == [
        f"GET {ISSUE}/sub_issues",
        f"PATCH {ISSUE}",
        f"POST {ISSUE}/comments",
    ]
    assert github.state == "open"
    (comment,) = github.our_comments()
    assert "from **Customer acceptance** to **Closed**" in comment
    assert (
        "Every customer acceptance item is done: Customer acceptance: The customer confirms the result"
        in comment
    )


def test_events_caused_by_the_service_itself_cost_nothing(sopguard: Service, github: FakeGithub) -> None:
    put_in_state(sopguard, github, "triage")

    sopguard.deliver(labelled(github, "status/closed", by=BOT), "ours-1")

    assert github.calls() == []
    assert [r.path_url for r in github.requests()] == ["/user"]
    assert "caused by this service" in next(iter(sopguard.intake.store.audit.entries())).reasons[0]


# --- faults: applied exactly once ---------------------------------------------------------------


def _json_reply(status: int, body: str, **headers: str) -> Reply:
    return status, {"Content-Type": "application/json", **headers}, body


FAULTS = {
    "502 on the comment": (
        "POST",
        "/comments",
        [_json_reply(502, '{"message": "Bad Gateway"}')],
        lambda waits: len(waits) == 1 and 0.5 <= waits[0] <= 2.5,
    ),
    "429 with retry-after on the labels": (  # the undo takes the person's label off: one DELETE
        "DELETE",
        "/labels/status%2Fin-progress",
        [_json_reply(429, '{"message": "Too Many Requests"}', **{"Retry-After": "7"})],
        lambda waits: waits == [7.0],
    ),
    "secondary rate limit (403) on the comment": (
        "POST",
        "/comments",
        [
            _json_reply(
                403, '{"message": "You have exceeded a secondary rate limit."}', **{"Retry-After": "3"}
            )
        ],
        lambda waits: waits == [3.0],
    ),
}


@pytest.mark.parametrize(("method", "suffix", "replies", "waited"), FAULTS.values(), ids=FAULTS.keys())
def test_transient_failures_are_retried_and_applied_once(
    sopguard: Service, github: FakeGithub, method: str, suffix: str, replies: list[Reply], waited: Any
) -> None:
    put_in_state(sopguard, github, "triage")
    github.fail(method, suffix, *replies)

    sopguard.deliver(labelled(github, "status/in-progress"), "fault-1")

    assert len(list(github.our_comments())) == 1
    assert set(github.labels) == {"status/triage"}
    assert waited(sopguard.slept), sopguard.slept
    outcomes = {
        e.outcome for e in sopguard.intake.store.audit.entries() if e.rule_id == "follow-the-lifecycle"
    }
    assert outcomes == {"applied"}


def test_a_comment_whose_post_timed_out_after_it_was_written_is_not_posted_again(
    sopguard: Service, github: FakeGithub
) -> None:
    put_in_state(sopguard, github, "triage")

    github.fail("POST", "/comments", done_then(requests.exceptions.ReadTimeout("read timed out")))

    sopguard.deliver(labelled(github, "status/in-progress"), "timeout-1")

    # The quick retry finds the comment its lost answer had posted (the journal says `started`).
    assert github.calls() == [
        f"DELETE {ISSUE}/labels/status%2Fin-progress",
        f"POST {ISSUE}/comments",
        f"GET {ISSUE}/comments",
    ]
    assert len(list(github.our_comments())) == 1


def test_a_sub_issue_link_that_timed_out_after_it_was_made_is_not_made_again(
    sopguard: Service, github: FakeGithub
) -> None:
    put_in_state(sopguard, github, "in-progress")
    add_checklist(github, "preparation")

    github.fail("POST", "/sub_issues", done_then(requests.exceptions.ReadTimeout("read timed out")))

    sopguard.deliver(labelled(github, "status/verification", body="### Key steps\n\nDone."), "link-timeout")

    self_check = [s["title"] for s in github.sub_issues if s["title"].startswith("Self-check:")]
    assert len(self_check) == len(set(self_check)) == 3
    assert len(github.orphans) == 3


def test_a_checklist_item_whose_creation_timed_out_after_it_happened_is_adopted_not_created_again(
    sopguard: Service, github: FakeGithub
) -> None:
    put_in_state(sopguard, github, "in-progress")
    add_checklist(github, "preparation")

    github.fail("POST", f"/repos/{REPO}/issues", done_then(requests.exceptions.ReadTimeout("read timed out")))

    sopguard.deliver(labelled(github, "status/verification", body="### Key steps\n\nDone."), "create-timeout")

    assert len(github.orphans) == 3, "no second issue for the item whose creation timed out"
    titles = [s["title"] for s in github.sub_issues if s["title"].startswith("Self-check:")]
    assert sorted(titles) == sorted(set(titles)) and len(titles) == 3
    assert github.calls()[2:6] == [
        f"POST /repos/{REPO}/issues",
        f"GET /repos/{REPO}/issues",
        f"POST {ISSUE}/sub_issues",
        f"POST /repos/{REPO}/issues",
    ]


def test_when_the_undo_fails_the_comment_does_not_claim_it_was_undone(
    sopguard: Service, github: FakeGithub
) -> None:
    put_in_state(sopguard, github, "triage")
    github.fail(
        "DELETE",
        "/labels/status%2Fin-progress",
        (403, {"Content-Type": "application/json"}, '{"message": "Resource not accessible by integration"}'),
    )

    sopguard.deliver(labelled(github, "status/in-progress"), "no-undo")

    (comment,) = github.our_comments()
    assert comment.startswith("**This change of stage does not follow the service procedure.**")
    assert "status/in-progress" in github.labels
    outcome = next(
        e.outcome for e in sopguard.intake.store.audit.entries() if e.rule_id == "follow-the-lifecycle"
    )
    assert outcome.startswith("failed: GitHub answered 403: Resource not accessible by integration")
    # The ledger says what GitHub shows: the person's stage stayed, so it is the issue's state now.
    assert sopguard.intake.store.ledger.memory(REF).last_state == "in-progress"
