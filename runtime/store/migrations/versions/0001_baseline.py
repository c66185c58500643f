"""baseline: the schema of the last release before migrations (commit 36979ef, webhooks/store.py)

A database that release made has these tables and no `alembic_version`: `ensure_schema` stamps it
with this revision, then upgrades it.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("delivery_id", sa.String(255), nullable=False),
        sa.Column("event_name", sa.String(100), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "issues",
        sa.Column("ref", sa.String(300), primary_key=True),
        sa.Column("source", sa.String(20)),
        sa.Column("scope", sa.String(255)),
        sa.Column("key", sa.String(100)),
        sa.Column("last_state", sa.String(100)),
        sa.Column("manual_priority", sa.String(20)),
        sa.Column("priority", sa.String(20)),
        sa.Column("is_open", sa.Boolean),
        sa.Column("reporter", sa.String(255)),
        sa.Column("reporter_id", sa.String(255)),
        sa.Column("assignees", sa.JSON),
        sa.Column("labels", sa.JSON),
        sa.Column("context", sa.JSON),
        sa.Column("next_due_at", sa.DateTime(timezone=True)),
        sa.Column("history_before", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_issues_is_open", "issues", ["is_open"])
    op.create_index("ix_issues_next_due_at", "issues", ["next_due_at"])
    op.create_table(
        "timeline",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ref", sa.String(300), nullable=False),
        sa.Column("entry", sa.JSON, nullable=False),
    )
    op.create_index("ix_timeline_ref", "timeline", ["ref"])
    op.create_table(
        "notifications",
        sa.Column("ref", sa.String(300), primary_key=True),
        sa.Column("target", sa.String(100), primary_key=True),
        sa.Column("cycle", sa.Integer, primary_key=True),
        sa.Column("threshold", sa.String(20), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivery_id", sa.String(255), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("issue", sa.String(300), nullable=False),
        sa.Column("event", sa.String(100), nullable=False),
        sa.Column("rule_id", sa.String(200)),
        sa.Column("sop", sa.String(10)),
        sa.Column("passed", sa.Boolean),
        sa.Column("mode", sa.String(10)),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("actions", sa.JSON, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_at", "audit", ["at"])
    op.create_index("ix_audit_issue", "audit", ["issue"])


def downgrade() -> None:
    for table in ("audit", "notifications", "timeline", "issues", "deliveries"):
        op.drop_table(table)
