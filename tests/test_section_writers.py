"""Who wrote a section a guard asks about (`SectionGuard.by`), in the engine: what the connector is
asked to read, how the writers are told apart, and what the ledger records. Pure: no tracker."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

from config.loader import parse_policy
from config.schema import Policy, SectionGuard
from policies.context import Context
from policies.ledger import IssueFacts, timeline_entries
from policies.models import Actor, Comment, Decision, Event, EventKind, IssueSnapshot
from policies.needs import Needs, comments_still_needed, needs
from policies.people import UNKNOWN_WRITER, person_key, restricted_sections, section_counts, section_writers
from policies.sla import SectionWritten
from tests.engine_support import GITHUB_REF, JIRA_REF, NOW

SOP_YAML = (Path(__file__).parents[1] / "config" / "sop.yaml").read_text(encoding="utf-8")
POLICY = parse_policy(SOP_YAML)
KEY_STEPS_BY = "          by: team-members # recorded by those who do the work"
CAROL = Actor("carol", id="557058:carol")
AMY = Actor("amy", id="557058:amy")
KEY_STEPS = "h3. Key steps\nReplaced the disk."
PLAN = "h3. Plan\nReplace the disk."


def _guard(policy: Policy) -> SectionGuard:
    (guard,) = [g for g in restricted_sections(policy) if g.id == "key-steps-recorded"]
    return guard


def _to_verification() -> Event:
    return Event(
        source="jira",
        kinds=frozenset({EventKind.STATUS_CHANGED}),
        delivery_id="move-1",
        actor=AMY,
        issue=JIRA_REF,
        status_before="In Progress",
        status_after="Verification",
    )


def _in_progress(
    body: str,
    timeline: tuple[SectionWritten, ...] = (),
    writer_teams: dict[str, frozenset[str]] | None = None,
) -> IssueSnapshot:
    """The issue moved on to verification, with this text; the customer Carol reported it."""
    return IssueSnapshot(
        ref=JIRA_REF,
        reporter=CAROL.login,
        reporter_id=CAROL.id,
        status="Verification",
        last_state="in-progress",
        body=body,
        timeline=timeline,
        writer_teams=writer_teams or {},
    )


def _written_by(person: Actor, at: dt.datetime = NOW - dt.timedelta(hours=1), **more: str) -> SectionWritten:
    return SectionWritten(at=at, guard="key-steps-recorded", author=person.login, author_id=person.id, **more)


def test_a_section_the_customer_wrote_into_the_issue_asks_for_the_comments_and_one_the_team_wrote_does_not() -> (
    None
):
    event = _to_verification()
    by_carol = _in_progress(body=KEY_STEPS, timeline=(_written_by(CAROL),))
    asked = needs(POLICY, event, by_carol)
    assert asked.sections == (_guard(POLICY),) and not asked.comments  # the issue's text may settle it
    assert "team-members" in asked.writer_teams

    looked_up = replace(by_carol, writer_teams={person_key(CAROL): frozenset()})
    more = comments_still_needed(POLICY, event, looked_up, asked)
    assert more == Needs(comments=True, sections=asked.sections, writer_teams=asked.writer_teams)

    by_amy = _in_progress(
        body=KEY_STEPS,
        timeline=(_written_by(AMY),),
        writer_teams={person_key(AMY): frozenset({"team-members"})},
    )
    assert comments_still_needed(POLICY, event, by_amy, asked) == Needs()
    assert comments_still_needed(POLICY, event, looked_up, more) == Needs()  # read once


def test_a_guard_that_names_the_plans_author_reads_the_comments_where_the_plan_in_force_may_be() -> None:
    policy = parse_policy(SOP_YAML.replace(KEY_STEPS_BY, "          by: author-of-plan", 1))
    event = _to_verification()
    snapshot = _in_progress(body=f"{PLAN}\n\n{KEY_STEPS}", timeline=(_written_by(CAROL),))

    assert needs(policy, event, snapshot).comments

    amys_plan = Comment(AMY, "h3. Plan\nReplace the whole server.", "c-1")
    verdict = section_counts(
        Context(policy, event, replace(snapshot, comments=(amys_plan,)), NOW), _guard(policy)
    )
    assert verdict == (False, ("a Key steps section by @carol: only the plan's author may write it",))


def test_a_guard_that_does_not_apply_asks_for_no_writers() -> None:
    text = SOP_YAML.replace(KEY_STEPS_BY, f"{KEY_STEPS_BY}\n          when_label: major-change", 1)
    policy = parse_policy(text)
    asked = needs(policy, _to_verification(), _in_progress(body=KEY_STEPS))

    assert asked.sections == () and asked.writer_teams == {}


def test_a_section_nobody_was_seen_writing_into_the_issue_counts_and_a_recorded_one_is_its_writers() -> None:
    guard, event = _guard(POLICY), _to_verification()
    unseen = _in_progress(body=KEY_STEPS)
    assert section_writers(event, unseen, guard) == [UNKNOWN_WRITER]
    assert section_counts(Context(POLICY, event, unseen, NOW), guard) == (True, ())

    late_first = (
        _written_by(AMY, at=NOW - dt.timedelta(minutes=5)),
        _written_by(CAROL, at=NOW - dt.timedelta(hours=2)),
    )
    recorded = _in_progress(body=KEY_STEPS, timeline=late_first)
    assert section_writers(event, recorded, guard) == [AMY]  # the latest record, not the last appended


def test_one_person_is_one_writer_with_the_association_github_gave_with_any_of_their_texts() -> None:
    guard = _guard(POLICY)
    sam = Actor("sam", id="104")
    event = replace(_to_verification(), source="github", issue=GITHUB_REF)
    snapshot = IssueSnapshot(
        ref=GITHUB_REF,
        body="### Key steps\n\nReplaced the disk.",
        timeline=(_written_by(sam),),
        comments=(Comment(replace(sam, association="MEMBER"), "### Key steps\n\nRestored.", "9"),),
    )

    assert section_writers(event, snapshot, guard) == [replace(sam, association="MEMBER")]


def test_opening_an_issue_with_the_section_records_its_writer_with_githubs_association() -> None:
    carol = Actor("carol", id="101", association="NONE")
    opened = Event(
        source="github",
        kinds=frozenset({EventKind.OPENED}),
        delivery_id="open-1",
        actor=carol,
        issue=GITHUB_REF,
        at=NOW,
    )
    snapshot = IssueSnapshot(
        ref=GITHUB_REF, reporter="carol", reporter_id="101", body="### Key steps\n\nTried a restart."
    )
    facts = IssueFacts(is_open=True, priority=None, reporter="carol", assignees=(), labels=frozenset())

    entries = timeline_entries(POLICY, opened, snapshot, Decision(), facts, None, NOW)

    written = [e for e in entries if isinstance(e, SectionWritten)]
    assert written == [_written_by(Actor("carol", id="101"), at=NOW, association="NONE")]


def test_an_anonymous_authors_section_is_someones_and_does_not_count() -> None:
    """Jira Data Center may allow anonymous comments: their author is nobody known, not a writer
    sopguard did not see."""
    guard, event = _guard(POLICY), _to_verification()
    snapshot = replace(_in_progress(body=""), comments=(Comment(Actor(""), KEY_STEPS, "c-9"),))

    verdict = section_counts(Context(POLICY, event, snapshot, NOW), guard)

    assert verdict == (False, ("a Key steps section by @anonymous: only the service team may write it",))
