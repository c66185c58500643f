"""Faults on Jira Cloud and Data Center: rate limits, unavailability, server errors and timeouts.

Every write is applied exactly once: 429/503 are retried after the server's `Retry-After`, other
5xx and connection errors with backoff, and a POST that may have worked (a timeout, a 500) is only
sent again once Jira shows it did not happen. The retry layer's sleeps are recorded, never slept.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from connector.retry import QUICK_ATTEMPTS
from policies.models import IssueRef
from tests.conftest import drain, services_of
from tests.jira_support import (
    CLOUD,
    DEPLOYMENTS,
    FIELDS,
    MYSELF,
    SERVER_INFO,
    Deployment,
    FakeJira,
    Service,
    adf_text,
    as_edit,
    done_then,
    intake_missing,
    issue_path,
    partly_done,
    post_comment,
    priority_set,
    project_type_read,
    start,
    subtasks_created,
    transition_undone,
    with_intake,
)


@pytest.fixture(params=DEPLOYMENTS, ids=lambda d: d.name)
def deployment(request: pytest.FixtureRequest) -> Deployment:
    chosen: Deployment = request.param
    return chosen


PREPARATION = [
    "Preparation: Tools, documents and parts are ready",
    "Preparation: Authorizations are in place",
    "Preparation: The customer's contact person is confirmed",
    "Preparation: The quality and safety rules for this work are checked (S3.4)",
]


def _is_backoff(wait: float, step: int = 0) -> bool:
    """1 s, 2 s, 4 s ... plus up to 1 s of jitter."""
    least = float(2**step)
    return least <= wait <= least + 1


def test_a_429_with_retry_after_on_the_transition_waits_as_told_and_moves_once(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    scenario = transition_undone(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    previous = "To Do" if deployment is CLOUD else "In Progress"
    fake.fail(
        "POST", "/transitions", (429, {"Retry-After": "7"}, '{"errorMessages": ["Rate limit exceeded."]}')
    )

    sopguard.deliver(scenario.payload, "rate-1")

    issue = issue_path(fake)
    assert fake.calls()[2:5] == [
        f"GET {issue}/transitions",
        f"POST {issue}/transitions",
        f"POST {issue}/transitions",
    ]
    assert sopguard.slept == [7.0]
    assert fake.status == previous
    assert sopguard.outcomes("rate-1")["follow-the-lifecycle"].startswith("applied (transition ")
    fake.check_against_openapi()


def test_a_503_with_retry_after_on_the_comment_waits_and_posts_once(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    scenario = transition_undone(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    fake.fail("POST", "/comment", (503, {"Retry-After": "3"}, ""))

    sopguard.deliver(scenario.payload, "busy-1")

    calls = [SERVER_INFO, *project_type_read(fake), post_comment(fake), post_comment(fake)]
    assert fake.calls()[-len(calls) :] == calls
    assert sopguard.slept == [3.0]
    assert len(fake.our_comments()) == 1
    fake.check_against_openapi()


def test_a_500_after_the_comment_was_written_finds_it_and_does_not_post_again(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    scenario = transition_undone(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    fake.fail("POST", "/comment", done_then((500, {}, '{"errorMessages": ["Internal server error"]}')))

    sopguard.deliver(scenario.payload, "err-1")

    issue = issue_path(fake)
    assert fake.calls()[-2:] == [
        post_comment(fake),
        f"GET {issue}/comment",  # the newest comments, with the marker and digest each carries
    ]
    assert fake.query("GET", f"{issue}/comment") == [
        {"startAt": ["0"], "maxResults": ["100"], "expand": ["properties"], "orderBy": ["-created"]}
    ]
    assert len(fake.our_comments()) == 1
    (wait,) = sopguard.slept
    assert _is_backoff(wait)
    journal = sopguard.journal(fake.key)
    (comment,) = [entry for key, entry in journal.items() if key.startswith("comment:")]
    assert comment.state == "done" and comment.result["id"] == fake.comments[-1]["id"]  # found, journaled
    fake.check_against_openapi()


def test_a_500_before_the_comment_was_written_posts_it_once_after_looking(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    scenario = transition_undone(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    fake.fail("POST", "/comment", (500, {}, ""))

    sopguard.deliver(scenario.payload, "err-2")

    issue = issue_path(fake)
    assert fake.calls()[-3:] == [post_comment(fake), f"GET {issue}/comment", post_comment(fake)]
    assert len(fake.our_comments()) == 1
    fake.check_against_openapi()


def test_a_lost_follow_up_is_not_mistaken_for_the_comment_it_follows_up(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    """The intake reminder's follow-up (same marker, new text) fails with a 500 before it is made:
    the newest comments show the reminder itself under that marker, but with another text's digest,
    so the follow-up is posted, once."""
    scenario = intake_missing(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    sopguard.deliver(scenario.payload, "create-1")
    fake.fail("POST", "/comment", (500, {}, ""))
    seen = len(fake.calls())

    sopguard.deliver(with_intake(as_edit(scenario.payload, list(fake.labels))), "edit-2")

    issue = issue_path(fake)
    assert fake.calls()[seen:] == [
        f"PUT {issue}",
        post_comment(fake),
        f"GET {issue}/comment",  # did it land? the reminder is there, the follow-up is not
        post_comment(fake),
        post_comment(fake),  # the receipt restated
    ]
    thanks = fake.our_comments()[2]
    assert "All required information is now present." in (adf_text(thanks) if deployment is CLOUD else thanks)
    assert len(fake.our_comments()) == 4
    assert sopguard.outcomes("edit-2")["intake-required-fields"].startswith("applied (follow-up to comment")


def _reminded_by_an_older_release(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> tuple[FakeJira, Service, dict[str, Any], str]:
    """An issue an older release reminded of its missing intake: no journal, the markers in the
    issue property, the comment properties carrying the marker alone (no digest); the edit that
    completes the intake, and the reminder's id."""
    scenario = intake_missing(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    sopguard.deliver(scenario.payload, "create-1")
    posted = {key.removeprefix("comment:"): e.result for key, e in sopguard.journal(fake.key).items()}
    sopguard.as_before_the_journal(fake.key)
    fake.properties["sopguard"] = {"version": 1, "comments": {m: posted[m] for m in posted if ":" not in m}}
    for comment in fake.comments:
        comment["properties"] = [
            {"key": "sopguard", "value": {"marker": p["value"]["marker"]}} for p in comment["properties"]
        ]
    edit = with_intake(as_edit(scenario.payload, list(fake.labels)))
    return fake, sopguard, edit, str(posted["intake-required-fields"]["id"])


def _followed_up_once(fake: FakeJira, sopguard: Service, delivery: str, reminder: str) -> None:
    thanks = fake.our_comments()[2]
    assert "All required information is now present." in (
        adf_text(thanks) if fake.deployment is CLOUD else thanks
    )
    assert len(fake.our_comments()) == 4
    outcome = sopguard.outcomes(delivery)["intake-required-fields"]
    assert outcome.startswith(f"applied (follow-up to comment {reminder});")
    assert sopguard.journal(fake.key)["comment:intake-required-fields"].result["id"] == fake.comments[2]["id"]


def test_a_lost_follow_up_is_not_mistaken_for_an_older_releases_comment_without_a_digest(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    """The follow-up's POST fails: the reminder the older release posted, found under the marker
    with no digest, is the comment followed up, not the follow-up."""
    fake, sopguard, edit, reminder = _reminded_by_an_older_release(no_network, tmp_path, deployment)
    fake.fail("POST", "/comment", (500, {}, ""))
    seen = len(fake.calls())

    sopguard.deliver(edit, "edit-2")

    issue = issue_path(fake)
    assert fake.calls()[seen:] == [
        f"PUT {issue}",
        f"GET {issue}/properties/sopguard",  # the older release's markers
        post_comment(fake),
        f"GET {issue}/comment",  # did it land? only the reminder, which it follows up, is there
        post_comment(fake),
        post_comment(fake),  # the receipt restated
    ]
    _followed_up_once(fake, sopguard, "edit-2", reminder)


def test_a_follow_up_begun_by_an_earlier_try_is_not_mistaken_for_an_older_releases_comment(
    no_network: responses.RequestsMock, tmp_path: Path
) -> None:
    """Jira asks for an hour on the follow-up's POST: the delivery runs again later, with the POST
    begun in the journal; the older release's reminder found then is not taken for it."""
    fake, sopguard, edit, reminder = _reminded_by_an_older_release(no_network, tmp_path, CLOUD)
    services = services_of(sopguard.app)
    now = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
    services.clock = lambda: now
    fake.fail("POST", "/comment", (429, {"Retry-After": "3600"}, ""))
    sopguard.deliver(edit, "edit-2")
    assert sopguard.journal(fake.key)["comment:intake-required-fields"].state == "started"
    seen = len(fake.calls())

    services.clock = lambda: now + dt.timedelta(hours=1, seconds=1)
    assert drain(sopguard.app) == 1

    issue = issue_path(fake)
    assert fake.calls()[seen : seen + 3] == [
        f"GET {issue}/properties/sopguard",  # the older release's markers: the comment followed up
        f"GET {issue}/comment",  # the POST was begun: did it happen? only that comment is there
        post_comment(fake),
    ]
    _followed_up_once(fake, sopguard, "edit-2", reminder)


def test_a_timeout_after_the_transition_was_made_is_not_followed_by_a_second_one(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    scenario = transition_undone(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    previous = "To Do" if deployment is CLOUD else "In Progress"
    fake.fail("POST", "/transitions", done_then(requests.ReadTimeout("read timed out")))

    sopguard.deliver(scenario.payload, "slow-1")

    issue = issue_path(fake)
    assert fake.calls()[2:5] == [f"GET {issue}/transitions", f"POST {issue}/transitions", f"GET {issue}"]
    assert fake.calls().count(f"POST {issue}/transitions") == 1
    assert fake.query("GET", issue) == [{"fields": ["status"]}]
    assert fake.status == previous
    assert sopguard.outcomes("slow-1")["follow-the-lifecycle"].startswith("applied (transition ")
    fake.check_against_openapi()


@pytest.mark.parametrize("landed", [True, False], ids=["it-landed", "it-did-not"])
def test_a_move_an_earlier_run_began_is_looked_for_before_it_is_made_again(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment, landed: bool
) -> None:
    """The process died between the transition's POST and its journal entry: the run after it finds
    the move `started`, so it reads where the issue is before moving it (only then)."""
    scenario = transition_undone(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    previous = "To Do" if deployment is CLOUD else "In Progress"
    ref = IssueRef("jira", "TES", fake.key)
    journal = sopguard.intake.store.journal(
        ref, "jira:crash-1", lambda: dt.datetime.now(dt.UTC), complete=True
    )
    journal.begin(f"state:crash-1:{previous}")
    if landed:
        fake.status = previous

    sopguard.deliver(scenario.payload, "crash-1")

    issue = issue_path(fake)
    moved = [] if landed else [f"GET {issue}/transitions", f"POST {issue}/transitions"]
    assert fake.calls()[2:] == [
        f"GET {issue}",
        *moved,
        SERVER_INFO,
        *project_type_read(fake),
        post_comment(fake),
    ]
    assert fake.query("GET", issue) == [{"fields": ["status"]}]
    assert fake.status == previous
    move = sopguard.outcomes("crash-1")["follow-the-lifecycle"].split(";")[0]
    assert move == f"skipped: already in {previous}" if landed else move.startswith("applied (transition ")


def test_a_timeout_after_the_sub_tasks_were_created_does_not_create_them_again(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    scenario = subtasks_created(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    fake.fail("POST", "/issue/bulk", done_then(requests.ReadTimeout("read timed out")))

    sopguard.deliver(scenario.payload, "slow-2")

    issue = issue_path(fake)
    bulk = "POST /rest/api/2/issue/bulk"
    assert fake.calls()[2:4] == [bulk, f"GET {issue}"]  # did they land? all three: nothing is sent again
    assert fake.calls().count(bulk) == 1 and fake.query("GET", issue) == [{"fields": ["subtasks"]}]
    assert fake.subtask_summaries() == PREPARATION
    assert sopguard.outcomes("slow-2")["preparation"] == "applied (4 created); applied"
    fake.check_against_openapi()


def test_a_bulk_creation_cut_off_after_some_items_sends_only_the_others_again(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    scenario = subtasks_created(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    fake.fail("POST", "/issue/bulk", partly_done(1, requests.ReadTimeout("read timed out")))

    sopguard.deliver(scenario.payload, "slow-4")

    issue = issue_path(fake)
    bulk = "POST /rest/api/2/issue/bulk"
    assert fake.calls()[2:5] == [bulk, f"GET {issue}", bulk]
    first, second = fake.sent("POST", "/rest/api/2/issue/bulk")
    assert [u["fields"]["summary"] for u in first["issueUpdates"]] == PREPARATION
    assert [u["fields"]["summary"] for u in second["issueUpdates"]] == PREPARATION[1:]
    assert fake.subtask_summaries() == PREPARATION
    journal = sopguard.journal(fake.key)
    assert [journal[f"sub-task:preparation:{title}"].state for title in PREPARATION] == ["done"] * len(
        PREPARATION
    )
    fake.check_against_openapi()


def test_an_item_jira_refuses_is_reported_and_the_others_are_created(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    scenario = subtasks_created(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    fake.refused_summaries.add(PREPARATION[1])

    sopguard.deliver(scenario.payload, "refused-2")

    assert fake.calls().count("POST /rest/api/2/issue/bulk") == 1  # a refusal is an answer: not retried
    assert fake.subtask_summaries() == [PREPARATION[0], *PREPARATION[2:]]
    assert sopguard.outcomes("refused-2")["preparation"].startswith(
        f"failed: 3 of 4 created; {PREPARATION[1]}: The issue type selected is invalid."
    )
    assert sopguard.journal(fake.key)[f"sub-task:preparation:{PREPARATION[1]}"].state == "failed"
    fake.check_against_openapi()


def test_a_bulk_creation_jira_refuses_as_a_whole_reports_each_item_and_is_not_retried(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    scenario = subtasks_created(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    fake.refused_summaries.update(PREPARATION)

    sopguard.deliver(scenario.payload, "refused-3")

    assert fake.calls().count("POST /rest/api/2/issue/bulk") == 1 and sopguard.slept == []
    assert fake.subtasks == []
    outcome = sopguard.outcomes("refused-3")["preparation"]
    assert outcome.startswith("failed: 0 of 4 created; ") and outcome.count(
        "The issue type selected is invalid."
    ) == len(PREPARATION)
    journal = sopguard.journal(fake.key)
    assert [journal[f"sub-task:preparation:{title}"].state for title in PREPARATION] == ["failed"] * len(
        PREPARATION
    )
    fake.check_against_openapi()


def test_a_timeout_on_the_edit_is_retried_because_the_edit_is_idempotent(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    scenario = priority_set(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    fake.fail("PUT", issue_path(fake), done_then(requests.ReadTimeout("read timed out")))

    sopguard.deliver(scenario.payload, "slow-3")

    issue = issue_path(fake)
    assert fake.calls()[2:4] == [f"PUT {issue}", f"PUT {issue}"]
    assert fake.priority == "Highest" and fake.labels.count("priority-P1") == 1
    assert sopguard.outcomes("slow-3")["priority-from-impact-and-urgency"] == "applied"
    fake.check_against_openapi()


def test_a_connection_error_while_learning_who_we_are_is_retried(
    no_network: responses.RequestsMock, tmp_path: Path
) -> None:
    scenario = transition_undone(CLOUD)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, CLOUD)
    fake.fail("GET", "/myself", requests.ConnectionError("connection reset by peer"))

    sopguard.deliver(scenario.payload, "reset-1")

    assert fake.calls()[:3] == [MYSELF, MYSELF, FIELDS]
    assert _is_backoff(sopguard.slept[0])
    assert fake.status == "To Do"


def test_a_wait_longer_than_a_worker_should_block_postpones_the_delivery_without_sleeping(
    no_network: responses.RequestsMock, tmp_path: Path
) -> None:
    """Jira asks for an hour: the worker does not block, the delivery waits in the inbox that long,
    then runs again; the journal keeps the move from being made twice, and the comment lands once."""
    scenario = transition_undone(CLOUD)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, CLOUD)
    services, inbox = services_of(sopguard.app), sopguard.intake.store.inbox
    now = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
    services.clock = lambda: now
    fake.fail("POST", "/comment", (429, {"Retry-After": "3600"}, ""))

    sopguard.deliver(scenario.payload, "long-1")

    assert sopguard.slept == []
    assert fake.our_comments() == [] and "sopguard" not in fake.properties and fake.status == "To Do"
    assert inbox.status("jira", "long-1") == "queued" and sopguard.outcomes("long-1") == {}
    assert inbox.error("jira", "long-1") == "the tracker is unavailable: the tracker asked to wait 3600 s"

    services.clock = lambda: now + dt.timedelta(minutes=59)
    assert drain(sopguard.app) == 0  # not before the hour Jira asked for
    seen = len(fake.calls())
    services.clock = lambda: now + dt.timedelta(hours=1, seconds=1)
    assert drain(sopguard.app) == 1

    issue = issue_path(fake)
    assert fake.calls()[seen:] == [  # the move is not made again; the comment, once
        f"GET {issue}/comment",  # the POST was begun: Jira is asked whether it happened
        post_comment(fake),
    ]
    assert len(fake.our_comments()) == 1 and fake.status == "To Do"
    assert inbox.status("jira", "long-1") == "processed"
    assert sopguard.outcomes("long-1")["follow-the-lifecycle"] == (
        "applied (transition 'Move to To Do' to To Do); applied"
    )


def _issue_from_before_the_journal(
    no_network: responses.RequestsMock, tmp_path: Path
) -> tuple[FakeJira, Service, dict[str, Any]]:
    """An issue an older release acted on (no journal; its comments' markers in the issue
    property), and a skipped stage on it again."""
    scenario = transition_undone(CLOUD)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, CLOUD)
    sopguard.deliver(scenario.payload, "old-1")
    sopguard.as_before_the_journal(fake.key)
    fake.status = scenario.payload["issue"]["fields"]["status"]["name"]  # a person skips again
    fake.properties["sopguard"] = {"version": 1, "comments": {}}
    return fake, sopguard, scenario.payload


def test_on_an_issue_from_before_the_journal_the_old_markers_are_read_and_a_comment_they_name_is_not_repeated(
    no_network: responses.RequestsMock, tmp_path: Path
) -> None:
    fake, sopguard, payload = _issue_from_before_the_journal(no_network, tmp_path)
    marker = "transition-rejected:new:in-progress:old-2"
    fake.properties["sopguard"]["comments"][marker] = {"id": "7", "digest": "posted-by-an-older-release"}
    seen = len(fake.calls())

    sopguard.deliver(payload, "old-2")

    issue = issue_path(fake)
    assert fake.calls()[seen:] == [f"POST {issue}/transitions", f"GET {issue}/properties/sopguard"]
    assert sopguard.outcomes("old-2")["follow-the-lifecycle"].endswith(
        "; skipped: already posted (comment 7)"
    )
    assert sopguard.journal(fake.key)[f"comment:{marker}"].result["id"] == "7"  # known from now on


def test_when_the_old_markers_cannot_be_read_no_comment_is_risked(
    no_network: responses.RequestsMock, tmp_path: Path
) -> None:
    """Without the markers a comment could be a second one: none is posted, the delivery waits and
    runs again, and then the comment is posted once (the move, journaled, is not made again)."""
    fake, sopguard, payload = _issue_from_before_the_journal(no_network, tmp_path)
    services, inbox = services_of(sopguard.app), sopguard.intake.store.inbox
    now = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
    services.clock = lambda: now
    fake.fail("GET", "/properties/sopguard", *[(500, {}, "")] * QUICK_ATTEMPTS)
    issue = issue_path(fake)
    seen = len(fake.calls())

    sopguard.deliver(payload, "blind-1")

    assert fake.calls()[seen:] == [f"POST {issue}/transitions", *[f"GET {issue}/properties/sopguard"] * 3]
    assert [_is_backoff(wait, step) for step, wait in enumerate(sopguard.slept)] == [True] * (
        QUICK_ATTEMPTS - 1
    )
    assert len(fake.our_comments()) == 1 and fake.status == "To Do"
    assert inbox.status("jira", "blind-1") == "queued" and sopguard.outcomes("blind-1") == {}

    seen = len(fake.calls())
    services.clock = lambda: now + dt.timedelta(minutes=1)  # past the first back-off (5 s ± 20 %)
    assert drain(sopguard.app) == 1

    assert fake.calls()[seen:] == [f"GET {issue}/properties/sopguard", post_comment(fake)]
    assert len(fake.our_comments()) == 2 and fake.status == "To Do"
    assert sopguard.outcomes("blind-1")["follow-the-lifecycle"] == (
        "applied (transition 'Move to To Do' to To Do); applied"
    )


def test_a_transition_back_that_jira_refuses_leaves_a_truthful_comment_and_the_label(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    scenario = transition_undone(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    stays, previous = ("In Progress", "To Do") if deployment is CLOUD else ("Resolved", "In Progress")
    refusal = '{"errorMessages": ["Field Resolution is required."]}'
    fake.fail("POST", "/transitions", (400, {"Content-Type": "application/json"}, refusal))

    sopguard.deliver(scenario.payload, "refused-1")

    issue = issue_path(fake)
    assert fake.calls()[2:5] == [f"GET {issue}/transitions", f"POST {issue}/transitions", f"PUT {issue}"]
    assert sopguard.slept == []  # a 400 is an answer, not a fault: nothing is retried
    assert fake.status == stays and "sop-violation" in fake.labels
    assert sopguard.outcomes("refused-1")["follow-the-lifecycle"].startswith(
        f"failed: Jira did not move the issue to {previous}: HTTP 400: Field Resolution is required.; "
        "commented and labelled sop-violation"
    )
    (comment,) = fake.our_comments()
    text = adf_text(comment) if deployment is CLOUD else comment.replace("*", "")
    assert "This change of stage does not follow the service procedure." in text
    assert f"Jira did not move this issue back to {previous}, so it stays in {stays}" in text
    fake.check_against_openapi()
