"""Sessions ended offline are found by a small partial index (late metering when the device returns).

Revision ID: 0017_late_meter
Revises: 0016_session_token
"""

import sqlalchemy as sa
from alembic import op

revision = "0017_late_meter"
down_revision = "0016_session_token"
branch_labels = None
depends_on = None

WHERE = sa.text("end_reason = 'offline'")


def upgrade():
    op.create_index(
        "ix_charge_session_offline_end",
        "charge_session",
        ["ended_at"],
        unique=False,
        postgresql_where=WHERE,
        sqlite_where=WHERE,
    )


def downgrade():
    op.drop_index("ix_charge_session_offline_end", table_name="charge_session")
