"""issues.gone and issues.unfinished: issues no longer followed, and notices not yet all landed

- `gone`: why an issue is no longer followed (deleted, transferred away), null while it is. Its row
  stays (its audit trail names it), but it is no longer swept, given clocks or notices.
- `unfinished`: the parts of notices (a receipt, a checklist comment, an SLA notice's comment or
  breach label) the tracker refused, with their attempts: the sweep tries each again until it lands.

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
        table.add_column(sa.Column("unfinished", sa.JSON(none_as_null=True)))


def downgrade() -> None:
    with op.batch_alter_table("issues") as table:
        table.drop_column("unfinished")
        table.drop_column("gone")
