"""What the receivers read out of real deliveries: when things happened, who did them, what changed."""

from __future__ import annotations

import datetime as dt

import pytest

from connector.github import events as github_events
from connector.jira import events as jira_events
from policies.models import EventKind
from tests.conftest import fixture_json


def test_a_github_comment_carries_its_time_and_author() -> None:
    payload = fixture_json("github", "issue_comment__created.json")

    event, snapshot = github_events.to_event("issue_comment", "d", payload)

    assert event.kinds == {EventKind.COMMENTED}
    assert event.at == dt.datetime(2019, 5, 15, 15, 20, 21, tzinfo=dt.UTC)
    assert event.comment is not None and event.comment.at == event.at
    assert event.comment.author.login == payload["comment"]["user"]["login"]
    assert snapshot.created_at == dt.datetime(2019, 5, 15, 15, 20, 18, tzinfo=dt.UTC)


def test_a_github_close_happens_at_closed_at() -> None:
    payload = fixture_json("github", "issues__closed.json")

    event, snapshot = github_events.to_event("issues", "d", payload)

    assert (event.status_before, event.status_after) == ("open", "closed") and not snapshot.is_open
    assert event.at is not None and event.at.isoformat().startswith(payload["issue"]["closed_at"][:19])


def test_a_jira_event_happens_at_its_timestamp_and_internal_notes_are_not_public() -> None:
    payload = fixture_json("jira", "mattermost__webhook-cloud-comment-created.json")
    payload["comment"]["jsdPublic"] = False

    event, _ = jira_events.to_event("d", payload)

    assert event.at == dt.datetime.fromtimestamp(payload["timestamp"] / 1000, dt.UTC)
    assert event.comment is not None and event.comment.public is False
    assert event.actor.id == payload["comment"]["author"]["accountId"]


@pytest.mark.parametrize(
    ("name", "kinds", "before", "after"),
    [
        (
            "mattermost__webhook-issue-updated-started-working.json",
            {EventKind.STATUS_CHANGED},
            "To Do",
            "In Progress",
        ),
        ("mattermost__webhook-issue-updated-raised-priority.json", {EventKind.PRIORITY_CHANGED}, None, None),
        ("mattermost__webhook-issue-updated-labels.json", {EventKind.LABELS_CHANGED}, None, None),
        (
            "mattermost__webhook-server-issue-updated-resolved.json",
            {EventKind.STATUS_CHANGED},  # the resolution Jira set with the close is no edit
            "In Progress",
            "Resolved",
        ),
        ("mattermost__webhook-issue-updated-reopened.json", {EventKind.STATUS_CHANGED}, "Done", "To Do"),
        ("mattermost__webhook-issue-created.json", {EventKind.OPENED}, None, "To Do"),
    ],
)
def test_jira_changelog_items_become_what_changed(
    name: str, kinds: set[EventKind], before: str | None, after: str | None
) -> None:
    event, _ = jira_events.to_event("d", fixture_json("jira", name))

    assert event.kinds == kinds
    assert (event.status_before, event.status_after) == (before, after)


def test_jira_label_changes_are_read_from_the_changelog_strings() -> None:
    event, _ = jira_events.to_event(
        "d", fixture_json("jira", "mattermost__webhook-issue-updated-labels.json")
    )

    assert event.labels_before == {"bad", "test-label"} and event.labels_after == {"sad", "test-label"}
