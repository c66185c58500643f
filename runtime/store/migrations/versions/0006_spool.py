"""spooled: how far each of the door's spool files is taken into the inbox

On SQLite the web processes append each delivery to a spool file of their own and the consumers
take the files into `deliveries` (see `runtime.store.spool`); this records, in the transaction
that adds their rows, up to which offset each file is in.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "spooled",
        sa.Column("file", sa.String(200), primary_key=True),
        sa.Column("taken_to", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("spooled")
