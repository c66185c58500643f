"""issues.gone: why an issue is no longer followed (deleted, transferred away), null while it is

A deleted issue, or one transferred to another repository, keeps its row (its audit trail names
it) but is no longer swept, given clocks or notices.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("issues") as table:
        table.add_column(sa.Column("gone", sa.String(200)))


def downgrade() -> None:
    with op.batch_alter_table("issues") as table:
        table.drop_column("gone")
