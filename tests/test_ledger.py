"""What the ledger rebuilds from a tracker's own history, for an issue first seen late."""

from __future__ import annotations

import datetime as dt

from config.loader import load_policy
from policies.ledger import backfill
from policies.models import Change
from policies.sla import Closed, Created, Reopened, StateChanged

POLICY = load_policy()
T0 = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)


def at(minute: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minute)


def test_github_label_history_becomes_state_changes_whichever_label_moved_first() -> None:
    history = [
        Change(at(3), "unlabeled", "status/triage"),  # the old label went first ...
        Change(at(4), "labeled", "status/diagnosis"),  # ... then the new one came
        Change(at(1), "labeled", "status/triage"),
        Change(at(2), "labeled", "bug"),
        Change(at(9), "closed"),
        Change(at(10), "reopened"),
    ]

    entries = backfill(POLICY, T0, history)

    assert entries == [
        Created(at=T0, state="new"),
        StateChanged(at=at(1), state="triage"),
        StateChanged(at=at(4), state="diagnosis"),
        Closed(at=at(9)),
        Reopened(at=at(10)),
    ]


def test_jira_status_history_is_mapped_through_the_policy_and_unknown_statuses_skipped() -> None:
    history = [
        Change(at(1), "status", "Triage"),
        Change(at(2), "status", "Some Custom Status"),
        Change(at(3), "status", "waiting for customer"),
    ]

    entries = backfill(POLICY, T0, history)

    assert entries[1:] == [
        StateChanged(at=at(1), state="triage"),
        StateChanged(at=at(3), state="waiting-for-customer"),
    ]
