"""Every table of the service's database, in one place: the migrations (Alembic) compare against it.

One database holds four jobs, each with its own module beside this one:
- `inbox`: the deliveries, as received (the row is the de-duplication record and the queue entry),
  and `turns`, the per-issue leases that make the work on one issue happen one step at a time;
- `journal`: every write sopguard made (or began) on a tracker, so none is ever repeated;
- `ledger`: what the service knows of each issue (`issues`, its `timeline`, SLA `notifications`);
- `audit`: every decision, with the rule and SOP clause behind it;
- `reconciles`: up to when each repository or project was last reconciled with its tracker.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    false,
)

metadata = MetaData()

# --- inbox ----------------------------------------------------------------------------------

deliveries = Table(
    "deliveries",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("key", String(300), nullable=False, unique=True),
    Column("source", String(20), nullable=False),
    Column("delivery_id", String(255), nullable=False),
    Column("event_name", String(100), nullable=False),
    Column("issue", String(300), nullable=False, server_default=""),
    Column("body", LargeBinary),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("not_before", DateTime(timezone=True)),
    Column("failing_since", DateTime(timezone=True)),
    Column("error", Text),
    Column("processed_at", DateTime(timezone=True)),
    Index("ix_deliveries_issue_status_seq", "issue", "status", "seq"),
    Index("ix_deliveries_status_seq", "status", "seq"),
)

turns = Table(
    "turns",
    metadata,
    Column("issue", String(300), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("until", DateTime(timezone=True), nullable=False),
)

spooled = Table(
    "spooled",
    metadata,
    Column("file", String(200), primary_key=True),  # a spool file's name (runtime/store/spool.py)
    Column("taken_to", Integer, nullable=False),  # the offset up to which it is in the inbox
)

# --- journal --------------------------------------------------------------------------------

writes = Table(
    "writes",
    metadata,
    Column("issue", String(300), primary_key=True),
    Column("key", String(400), primary_key=True),
    Column("state", String(10), nullable=False),
    Column("result", JSON, nullable=False),
    Column("delivery", String(300), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

# --- ledger ---------------------------------------------------------------------------------

issues = Table(
    "issues",
    metadata,
    Column("ref", String(300), primary_key=True),
    Column("source", String(20)),
    Column("scope", String(255)),
    Column("key", String(100)),
    Column("last_state", String(100)),
    Column("manual_priority", String(20)),
    Column("priority", String(20)),
    Column("is_open", Boolean, index=True),
    Column("reporter", String(255)),
    Column("reporter_id", String(255)),
    Column("assignees", JSON),
    Column("labels", JSON),
    Column("context", JSON),
    Column("next_due_at", DateTime(timezone=True), index=True),
    Column("history_before", DateTime(timezone=True)),
    Column("as_of", DateTime(timezone=True)),
    Column("adopted_at", DateTime(timezone=True)),  # met mid-life and adopted (policies.adoption)
    # False for an issue of a release before the journal: sopguard may have written to it unjournaled.
    Column("journaled", Boolean, nullable=False, server_default=false()),
    # Why the issue is no longer followed (deleted, transferred away); null while it is.
    Column("gone", String(200)),
    # The parts of notices (comments, breach labels) that did not land yet: the sweep tries them again.
    Column("unfinished", JSON(none_as_null=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

timeline = Table(
    "timeline",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ref", String(300), nullable=False, index=True),
    Column("entry", JSON, nullable=False),
)

notifications = Table(
    "notifications",
    metadata,
    Column("ref", String(300), primary_key=True),
    Column("target", String(100), primary_key=True),
    Column("cycle", Integer, primary_key=True),
    Column("threshold", String(20), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
)

# --- reconcile ------------------------------------------------------------------------------

reconciles = Table(
    "reconciles",
    metadata,
    Column("scope", String(300), primary_key=True),  # `github:owner/name`, `jira:PROJ`
    Column("until", DateTime(timezone=True), nullable=False),
)

# --- audit ----------------------------------------------------------------------------------

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("delivery_id", String(255), nullable=False),
    Column("source", String(20), nullable=False),
    Column("issue", String(300), nullable=False, index=True),
    Column("event", String(100), nullable=False),
    Column("rule_id", String(200)),
    Column("sop", String(10)),
    Column("passed", Boolean),
    Column("mode", String(10)),
    Column("reasons", JSON, nullable=False),
    Column("actions", JSON, nullable=False),
    Column("outcome", Text, nullable=False),
)
