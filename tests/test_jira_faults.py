"""Faults on Jira Cloud and Data Center: rate limits, unavailability, server errors and timeouts.

Every write is applied exactly once: 429/503 are retried after the server's `Retry-After`, other
5xx and connection errors with backoff, and a POST that may have worked (a timeout, a 500) is only
sent again once Jira shows it did not happen. The retry layer's sleeps are recorded, never slept.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import requests
import responses

from connector.retry import QUICK_ATTEMPTS
from tests.conftest import drain, services_of
from tests.jira_support import (
    CLOUD,
    DEPLOYMENTS,
    FIELDS,
    MYSELF,
    SERVER_INFO,
    Deployment,
    adf_text,
    done_then,
    issue_path,
    post_comment,
    priority_set,
    start,
    subtasks_created,
    transition_undone,
)


@pytest.fixture(params=DEPLOYMENTS, ids=lambda d: d.name)
def deployment(request: pytest.FixtureRequest) -> Deployment:
    chosen: Deployment = request.param
    return chosen


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

    issue = issue_path(fake)
    assert fake.calls()[-4:] == [
        SERVER_INFO,
        post_comment(fake),
        post_comment(fake),
        f"PUT {issue}/properties/sopguard",
    ]
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
    assert fake.calls()[-3:] == [
        post_comment(fake),
        f"GET {issue}/comment",  # the newest comments, with the marker each carries
        f"PUT {issue}/properties/sopguard",
    ]
    assert fake.query("GET", f"{issue}/comment") == [
        {"startAt": ["0"], "maxResults": ["100"], "expand": ["properties"], "orderBy": ["-created"]}
    ]
    assert len(fake.our_comments()) == 1
    (wait,) = sopguard.slept
    assert _is_backoff(wait)
    recorded = fake.properties["sopguard"]["comments"]
    assert [entry["id"] for entry in recorded.values()] == [fake.comments[-1]["id"]]
    fake.check_against_openapi()


def test_a_500_before_the_comment_was_written_posts_it_once_after_looking(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    scenario = transition_undone(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    fake.fail("POST", "/comment", (500, {}, ""))

    sopguard.deliver(scenario.payload, "err-2")

    issue = issue_path(fake)
    assert fake.calls()[-4:] == [
        post_comment(fake),
        f"GET {issue}/comment",
        post_comment(fake),
        f"PUT {issue}/properties/sopguard",
    ]
    assert len(fake.our_comments()) == 1
    fake.check_against_openapi()


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


def test_a_timeout_after_a_sub_task_was_created_does_not_create_it_again(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    scenario = subtasks_created(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    fake.fail("POST", "/rest/api/2/issue", done_then(requests.ReadTimeout("read timed out")))

    sopguard.deliver(scenario.payload, "slow-2")

    issue = issue_path(fake)
    calls = fake.calls()  # the checklist's items first, then its comment
    first = calls.index(f"GET {issue}")
    assert calls[first : first + 5] == [
        f"GET {issue}",
        "POST /rest/api/2/issue",
        f"GET {issue}",  # did it land? yes: go on with the next item
        "POST /rest/api/2/issue",
        "POST /rest/api/2/issue",
    ]
    assert fake.subtask_summaries() == [
        "Preparation: Tools, documents and parts are ready",
        "Preparation: Authorizations are in place",
        "Preparation: The customer's contact person is confirmed",
    ]
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
        f"GET {issue}/properties/sopguard",
        post_comment(fake),
        f"PUT {issue}/properties/sopguard",
    ]
    assert len(fake.our_comments()) == 1 and fake.status == "To Do"
    assert inbox.status("jira", "long-1") == "processed"
    assert sopguard.outcomes("long-1")["follow-the-lifecycle"] == (
        "applied (transition 'Move to To Do' to To Do); applied"
    )


def test_when_the_markers_cannot_be_read_no_comment_is_risked(
    no_network: responses.RequestsMock, tmp_path: Path
) -> None:
    """Without the markers a comment could be a second one: none is posted, the delivery waits and
    runs again, and then the comment is posted once (the move, journaled, is not made again)."""
    scenario = transition_undone(CLOUD)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, CLOUD)
    services, inbox = services_of(sopguard.app), sopguard.intake.store.inbox
    now = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
    services.clock = lambda: now
    fake.fail("GET", "/properties/sopguard", *[(500, {}, "")] * QUICK_ATTEMPTS)
    issue = issue_path(fake)

    sopguard.deliver(scenario.payload, "blind-1")

    assert fake.calls().count(f"GET {issue}/properties/sopguard") == QUICK_ATTEMPTS
    assert [_is_backoff(wait, step) for step, wait in enumerate(sopguard.slept)] == [True] * (
        QUICK_ATTEMPTS - 1
    )
    assert fake.our_comments() == [] and fake.status == "To Do"
    assert inbox.status("jira", "blind-1") == "queued" and sopguard.outcomes("blind-1") == {}

    seen = len(fake.calls())
    services.clock = lambda: now + dt.timedelta(minutes=1)  # past the first back-off (5 s ± 20 %)
    assert drain(sopguard.app) == 1

    assert fake.calls()[seen:] == [
        f"GET {issue}/properties/sopguard",
        SERVER_INFO,
        post_comment(fake),
        f"PUT {issue}/properties/sopguard",
    ]
    assert len(fake.our_comments()) == 1 and fake.status == "To Do"
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
