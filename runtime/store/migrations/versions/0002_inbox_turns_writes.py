"""inbox, turns and writes: deliveries become the queue (with their bodies), issues get as_of

- `deliveries` is rebuilt as the inbox: a `seq` primary key (the order of arrival; the old rows get
  theirs in the order they were received), `key` unique, and the new columns `issue`, `body`,
  `attempts`, `not_before`, `failing_since`, `error`. An old row still `queued` or `received` cannot
  be run: its body stayed in the old queue. It becomes `failed`, with an error that says so.
- new tables: `turns` (per-issue leases) and `writes` (the journal of tracker writes);
- `issues.as_of` (the newest moment of the issue a delivery showed) and `issues.journaled` (false
  for the issues of the previous release: sopguard may have written to them before it kept a
  journal, so a connector looks on the tracker before a first write there).

The table is rebuilt through a holding table rather than altered in place, so that on every database
its constraints and indexes get the names a fresh `create_all` gives them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNRUNNABLE = ("queued", "received")
UNRUNNABLE_ERROR = (
    "queued before the upgrade to the new inbox: its body stayed in the old queue; "
    "drain the old queue with the previous version, or redeliver it from the tracker"
)
HOLDING = "deliveries_holding"


def _baseline_columns(primary_key: bool) -> list[sa.Column[object]]:
    return [
        sa.Column("key", sa.String(300), primary_key=primary_key, nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("delivery_id", sa.String(255), nullable=False),
        sa.Column("event_name", sa.String(100), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True)),
    ]


def _set_aside_deliveries() -> sa.Table:
    """Move the rows of `deliveries` into a holding table (same columns, no constraints); drop it."""
    holding = op.create_table(HOLDING, *_baseline_columns(primary_key=False))
    current = sa.table("deliveries", *(sa.column(column.name) for column in holding.columns))
    names = [column.name for column in holding.columns]
    op.execute(sa.insert(holding).from_select(names, sa.select(*(current.c[name] for name in names))))
    op.drop_table("deliveries")
    return holding


def _create_inbox() -> sa.Table:
    inbox = op.create_table(
        "deliveries",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("delivery_id", sa.String(255), nullable=False),
        sa.Column("event_name", sa.String(100), nullable=False),
        sa.Column("issue", sa.String(300), nullable=False, server_default=""),
        sa.Column("body", sa.LargeBinary),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("not_before", sa.DateTime(timezone=True)),
        sa.Column("failing_since", sa.DateTime(timezone=True)),
        sa.Column("error", sa.Text),
        sa.Column("processed_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("key"),
    )
    op.create_index("ix_deliveries_issue_status_seq", "deliveries", ["issue", "status", "seq"])
    op.create_index("ix_deliveries_status_seq", "deliveries", ["status", "seq"])
    return inbox


def upgrade() -> None:
    holding = _set_aside_deliveries()
    inbox = _create_inbox()
    stale = holding.c.status.in_(UNRUNNABLE)
    kept = ["key", "source", "delivery_id", "event_name", "received_at", "processed_at"]
    rows = sa.select(
        *(holding.c[name] for name in kept),
        sa.case((stale, sa.literal("failed", sa.String(20))), else_=holding.c.status),
        sa.case((stale, sa.literal(UNRUNNABLE_ERROR, sa.Text)), else_=sa.null()),
    ).order_by(holding.c.received_at, holding.c.key)
    # `seq` is left to the database: it numbers the rows in the order the SELECT gives them.
    op.execute(sa.insert(inbox).from_select([*kept, "status", "error"], rows))
    op.drop_table(HOLDING)

    op.create_table(
        "turns",
        sa.Column("issue", sa.String(300), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "writes",
        sa.Column("issue", sa.String(300), primary_key=True),
        sa.Column("key", sa.String(400), primary_key=True),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("result", sa.JSON, nullable=False),
        sa.Column("delivery", sa.String(300), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("issues") as batch:
        batch.add_column(sa.Column("as_of", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("journaled", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    """Back to the baseline: bodies, attempts, errors, leases and the journal are lost."""
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("journaled")
        batch.drop_column("as_of")
    op.drop_table("writes")
    op.drop_table("turns")
    op.drop_index("ix_deliveries_status_seq", table_name="deliveries")
    op.drop_index("ix_deliveries_issue_status_seq", table_name="deliveries")
    holding = _set_aside_deliveries()
    baseline = op.create_table("deliveries", *_baseline_columns(primary_key=True))
    names = [column.name for column in holding.columns]
    op.execute(sa.insert(baseline).from_select(names, sa.select(holding)))
    op.drop_table(HOLDING)
