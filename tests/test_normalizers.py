"""What the receivers read out of real deliveries: when things happened, who did them, what changed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from config.loader import load_policy
from connector.errors import BadPayload, Ignored
from connector.github import events as github_events
from connector.jira import events as jira_events
from policies.followup import rating
from policies.models import Actor, Comment, EventKind, IssueRef, IssueSnapshot
from policies.text import parse_time, sections
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


# --- bad data inside a signed delivery: refused with a reason that names the JSON path ---------


def test_a_github_issue_number_that_is_not_a_number_is_refused_by_name() -> None:
    payload = fixture_json("github", "issues__labeled.json")
    payload["issue"]["number"] = "abc"

    with pytest.raises(BadPayload, match=r'^issue\.number must be a positive integer, not "abc"$'):
        github_events.to_event("issues", "d", payload)
    with pytest.raises(BadPayload, match=r"^issue\.number must be a positive integer"):
        github_events.issue_key("issues", payload)


def test_a_github_label_that_is_not_an_object_is_refused_by_position() -> None:
    payload = fixture_json("github", "issues__labeled.json")
    payload["issue"]["labels"].append("urgent")

    with pytest.raises(BadPayload, match=r'^issue\.labels\[1\] must be an object, not "urgent"$'):
        github_events.to_event("issues", "d", payload)


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        (
            ("issue", "created_at"),
            {"at": 1},
            "issue.created_at must be an ISO 8601 time or epoch milliseconds, not an object",
        ),
        (
            ("comment", "created_at"),
            True,
            "comment.created_at must be an ISO 8601 time or epoch milliseconds, not true",
        ),
        (("comment",), "hello", 'comment must be an object, not "hello"'),
        (("sender",), ["octocat"], "sender must be an object, not a list"),
        (("comment", "user", "login"), 7, "comment.user.login must be a string, not 7"),
        (
            ("repository", "full_name"),
            "no-slash",
            'repository.full_name must be "owner/name", not "no-slash"',
        ),
    ],
)
def test_github_values_of_the_wrong_shape_are_refused_by_path(
    path: tuple[str, ...], value: object, reason: str
) -> None:
    payload = fixture_json("github", "issue_comment__created.json")
    target = payload
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value

    with pytest.raises(BadPayload) as refusal:
        github_events.to_event("issue_comment", "d", payload)

    assert str(refusal.value) == reason


def test_a_github_action_that_is_not_text_is_refused_without_printing_it() -> None:
    payload = fixture_json("github", "issues__labeled.json")
    deep: list[object] = []
    for _ in range(900):
        deep = [deep]
    payload["action"] = deep

    with pytest.raises(BadPayload, match=r"^action must be a string, not a list$"):
        github_events.classify("issues", payload)
    with pytest.raises(Ignored, match="unknown GitHub event 'team'"):
        github_events.classify("team", payload)


def test_a_jira_user_that_is_not_an_object_is_refused_by_name() -> None:
    payload = fixture_json("jira", "mattermost__webhook-issue-updated-labels.json")
    payload["user"] = "x"

    with pytest.raises(BadPayload, match=r'^user must be an object, not "x"$'):
        jira_events.to_event("d", payload)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (
            lambda p: p["issue"]["fields"].update(labels=["ok", 3]),
            "issue.fields.labels[1] must be a string, not 3",
        ),
        (
            lambda p: p["issue"]["fields"].update(comment={"comments": ["not a comment"]}),
            'issue.fields.comment.comments[0] must be an object, not "not a comment"',
        ),
        (
            lambda p: p["issue"]["fields"].update(comment="none"),
            'issue.fields.comment must be an object, not "none"',
        ),
        (lambda p: p.update(changelog={"items": [None]}), "changelog.items[0] must be an object, not null"),
        (
            lambda p: p.update(timestamp=[1]),
            "timestamp must be an ISO 8601 time or epoch milliseconds, not a list",
        ),
        (
            lambda p: p["issue"].update(key="not a key"),
            'issue.key must be an issue key like "PROJ-123", not "not a key"',
        ),
    ],
)
def test_jira_values_of_the_wrong_shape_are_refused_by_path(
    mutate: Callable[[dict[str, Any]], None], reason: str
) -> None:
    payload = fixture_json("jira", "mattermost__webhook-issue-updated-labels.json")
    mutate(payload)

    with pytest.raises(BadPayload) as refusal:
        jira_events.to_event("d", payload)

    assert str(refusal.value) == reason


def test_a_jira_field_nested_absurdly_deep_is_refused_by_field() -> None:
    payload = fixture_json("jira", "mattermost__webhook-issue-created.json")
    deep: object = "bottom"
    for _ in range(900):
        deep = [deep]
    payload["issue"]["fields"]["customfield_10100"] = deep

    with pytest.raises(BadPayload, match=r"^issue\.fields\.customfield_10100 is nested too deeply$"):
        jira_events.to_event("d", payload)


def test_jira_times_without_an_offset_are_read_as_utc() -> None:
    payload = fixture_json("jira", "mattermost__webhook-server-issue-updated-commented-1.json")
    payload["issue"]["fields"]["created"] = "2026-11-24T10:00:00.000"
    payload["comment"]["created"] = "2026-11-24T11:30:00"

    event, snapshot = jira_events.to_event("d", payload)

    assert snapshot.created_at == dt.datetime(2026, 11, 24, 10, tzinfo=dt.UTC)
    assert event.comment is not None and event.comment.at == dt.datetime(2026, 11, 24, 11, 30, tzinfo=dt.UTC)
    assert event.comment.at > snapshot.created_at  # comparable: neither is naive


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-24T10:00:00.000", dt.datetime(2026, 11, 24, 10, tzinfo=dt.UTC)),
        ("2026-11-24", dt.datetime(2026, 11, 24, tzinfo=dt.UTC)),
        ("2019-02-15T19:01:52.971-0800", dt.datetime(2019, 2, 16, 3, 1, 52, 971000, tzinfo=dt.UTC)),
        (1_550_286_112_971, dt.datetime(2019, 2, 16, 3, 1, 52, 971000, tzinfo=dt.UTC)),
        (-1, None),  # before the epoch
        (10**20, None),  # beyond the year 9999
        (253_402_214_400_000, None),  # 9999-12-31: no room left to add a deadline
        (float("nan"), None),
        (float("inf"), None),
        (True, None),
        ("0001-01-01T00:00:00+01:00", None),
        ("2019-1-30 15:51:34,870", None),  # Jira Server, seen in a real delivery
        ("", None),
        ({"at": 1}, None),
    ],
)
def test_parse_time_gives_an_aware_plausible_time_or_none(
    value: object, expected: dt.datetime | None
) -> None:
    parsed = parse_time(value)

    assert parsed == expected
    assert parsed is None or parsed.tzinfo is not None


def test_an_absurd_jira_epoch_is_no_time_rather_than_an_error() -> None:
    payload = fixture_json("jira", "mattermost__webhook-issue-updated-labels.json")
    payload["timestamp"] = -(10**18)

    event, _ = jira_events.to_event("d", payload)

    assert event.at is None


# --- issue_key: the identity the receiver orders deliveries by ----------------------------------


def test_a_github_issue_key_names_the_repository_and_number() -> None:
    payload = fixture_json("github", "issue_comment__created.json")

    assert github_events.issue_key("issue_comment", payload) == "github:Codertocat/Hello-World#1"


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("mattermost__webhook-issue-created.json", "jira:TES-41"),
        ("mattermost__webhook-cloud-comment-created.json", "jira:TES-41"),
        ("jira-to-matrix__comment-created.json", "jira:id:26313"),  # no issue: its id from comment.self
        ("mattermost__webhook-server-comment-created.json", "jira:id:10013"),
    ],
)
def test_a_jira_issue_key_is_the_issue_key_or_else_the_id_in_the_comment_url(name: str, key: str) -> None:
    payload = fixture_json("jira", name)

    assert jira_events.issue_key(payload["webhookEvent"], payload) == key


@pytest.mark.parametrize(
    ("source", "mutate", "reason"),
    [
        ("github", lambda p: p.pop("repository"), "repository is missing"),
        ("github", lambda p: p["issue"].update(number=0), "issue.number must be a positive integer, not 0"),
        (
            "github",
            lambda p: p["issue"].update(number=True),
            "issue.number must be a positive integer, not true",
        ),
        ("jira", lambda p: p["issue"].pop("key"), "issue.key is missing"),
        ("jira", lambda p: p.update(issue="TES-41"), 'issue must be an object, not "TES-41"'),
        (
            "jira-server",
            lambda p: p["comment"].update(self="https://jira.example/rest/api/2/comment/7"),
            "a 'comment_created' delivery names no issue: no 'issue', and comment.self is "
            '"https://jira.example/rest/api/2/comment/7"',
        ),
    ],
)
def test_an_issue_key_that_cannot_be_told_is_a_bad_payload(
    source: str, mutate: Callable[[dict[str, Any]], object], reason: str
) -> None:
    names = {
        "github": ("github", "issues__labeled.json"),
        "jira": ("jira", "mattermost__webhook-issue-created.json"),
        "jira-server": ("jira", "jira-to-matrix__comment-created.json"),
    }
    payload = fixture_json(*names[source])
    mutate(payload)
    issue_key = github_events.issue_key if source == "github" else jira_events.issue_key

    with pytest.raises(BadPayload) as refusal:
        issue_key(str(payload.get("webhookEvent", "issues")), payload)

    assert str(refusal.value) == reason


@pytest.mark.parametrize(
    "name",
    ["a" * 101 + "/b", "a/" + "b" * 101, "own\u0000er/name", "owner/\ud800", "o w/n", "\u00e9t\u00e9/name"],
)
def test_a_github_repository_name_github_would_not_give_is_a_bad_payload(name: str) -> None:
    """Found by tests/test_endpoint_fuzz.py: such a name made an issue key that PostgreSQL could not
    store (too long for the inbox's column, or a NUL), so the door answered 503 for ever."""
    payload = fixture_json("github", "issues__opened.json")
    payload["repository"]["full_name"] = name

    with pytest.raises(BadPayload, match=r'^repository\.full_name must be "owner/name", not '):
        github_events.issue_key("issues", payload)


def test_the_longest_github_repository_name_is_accepted() -> None:
    payload = fixture_json("github", "issues__opened.json")
    payload["repository"]["full_name"] = f"{'o' * 39}/{'a.b_c-d' * 14}xx"

    assert github_events.issue_key("issues", payload).startswith("github:" + "o" * 39 + "/")


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (
            lambda p: p["issue"].update(key="P" * 81 + "-1"),
            'issue.key must be an issue key like "PROJ-123", not "PPPP',
        ),
        (
            lambda p: p["issue"].update(key="PROJ-" + "1" * 20),
            'issue.key must be an issue key like "PROJ-123", not "PROJ-1111',
        ),
    ],
)
def test_a_jira_issue_key_longer_than_jira_writes_is_a_bad_payload(
    mutate: Callable[[dict[str, Any]], None], reason: str
) -> None:
    """Found by tests/test_endpoint_fuzz.py: a longer key did not fit the inbox's issue column (and
    the ledger's key column, 100 characters, on PostgreSQL)."""
    payload = fixture_json("jira", "mattermost__webhook-issue-created.json")
    mutate(payload)

    with pytest.raises(BadPayload) as refusal:
        jira_events.issue_key("jira:issue_created", payload)

    assert str(refusal.value).startswith(reason)
    longest = "P" * 80 + "-" + "9" * 19
    assert jira_events.issue_key("jira:issue_created", {"issue": {"key": longest}}) == f"jira:{longest}"


def test_a_jira_comment_url_with_an_issue_id_beyond_64_bits_names_no_issue() -> None:
    payload = fixture_json("jira", "jira-to-matrix__comment-created.json")
    payload["comment"]["self"] = "https://jira.example/rest/api/2/issue/" + "9" * 300 + "/comment/1"

    with pytest.raises(BadPayload, match="names no issue"):
        jira_events.issue_key("comment_created", payload)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("x" * 256, "must be at most 255 characters"),
        ("ad\u0000min", "must be text without NUL characters or lone surrogates"),
        ("\ud800", "must be text without NUL characters or lone surrogates"),
    ],
)
def test_a_name_the_ledger_could_not_keep_is_a_bad_payload(value: str, reason: str) -> None:
    """Found by tests/test_endpoint_fuzz.py: a reporter's login of 20,000 characters, a NUL or a lone
    surrogate was accepted, then writing the ledger failed (PostgreSQL: value too long) and the
    delivery ended `failed` with "unexpected error: DataError"."""
    github = fixture_json("github", "issues__opened.json")
    github["issue"]["user"]["login"] = value
    jira = fixture_json("jira", "mattermost__webhook-issue-updated-labels.json")
    jira["user"]["displayName"] = value
    project = fixture_json("jira", "mattermost__webhook-issue-created.json")
    project["issue"]["fields"]["project"]["key"] = value

    with pytest.raises(BadPayload) as by_github:
        github_events.to_event("issues", "d", github)
    with pytest.raises(BadPayload) as by_jira:
        jira_events.to_event("d", jira)
    with pytest.raises(BadPayload) as by_project:
        jira_events.to_event("d", project)

    assert str(by_github.value).startswith(f"issue.user.login {reason}, not ")
    assert str(by_jira.value).startswith(f"user.displayName {reason}, not ")
    assert str(by_project.value).startswith(f"issue.fields.project.key {reason}, not ")


def test_a_jira_event_type_name_longer_than_the_audit_keeps_is_a_bad_payload() -> None:
    payload = fixture_json("jira", "mattermost__webhook-issue-updated-labels.json")
    payload["issue_event_type_name"] = "issue_" + "x" * 95

    with pytest.raises(BadPayload, match=r"^issue_event_type_name must be at most 100 characters, not "):
        jira_events.to_event("d", payload)


def test_names_of_the_longest_kept_length_and_in_any_script_are_read() -> None:
    payload = fixture_json("jira", "mattermost__webhook-issue-updated-labels.json")
    payload["user"] = {"displayName": "\u5f20\u4f1f \U0001f468\u200d\U0001f469" + "x" * 249}

    event, _ = jira_events.to_event("d", payload)

    assert event.actor.login == payload["user"]["displayName"]


# --- text read out of deliveries: linear whatever a person writes -------------------------------


def test_an_issue_body_with_a_heading_then_a_megabyte_of_blanks_is_read() -> None:
    """Found reading the patterns the fuzzed bodies reach: a heading line ending in a long run of
    blanks was quadratic (40,000 spaces took 24 s; a megabyte would hold the worker for hours)."""
    payload = fixture_json("github", "issues__opened.json")
    payload["issue"]["body"] = "### Impact" + " " * 1_000_000 + "x\n\nDegraded ## \n### C# ###\n_No response_"

    _, snapshot = github_events.to_event("issues", "d", payload)

    assert snapshot.fields == {"Impact" + " " * 1_000_000 + "x": "Degraded ##", "C#": ""}  # CommonMark
    assert sections("h3. Urgency   \t\nHigh\nh3. #\nhash", "jira") == {"Urgency": "High", "#": "hash"}


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("5" + " " * 100_000 + "x", None),
        ("5" + " " * 100_000 + "/ 4", None),
        (" 4 / 5 !" + " \n" * 50_000, 4),
        ("3.", 3),
        ("2/5", 2),
        ("6", None),
    ],
)
def test_a_rating_reply_is_read_whatever_its_blanks(reply: str, score: int | None) -> None:
    """Found reading the patterns: three adjacent `\\s*` made a reply of "5", 2,000 spaces and a
    letter take 40 s to be told it is no rating (cubic); the reporter writes that reply."""
    reporter = Actor(login="octocat")
    closed = IssueSnapshot(ref=IssueRef("github", "o/n", "1"), is_open=False, reporter="octocat")

    assert rating(load_policy(), closed, Comment(author=reporter, body=reply)) == score
