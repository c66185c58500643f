"""adoption: issues.adopted_at

`issues.adopted_at` is when sopguard adopted an issue it met mid-life (by a delivery or by
`sopguard adopt`); null for the issues it followed from their opening, and for those of earlier
releases.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.add_column(sa.Column("adopted_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("adopted_at")
