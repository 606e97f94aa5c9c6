"""charger: when a station refused charging profiles on RemoteStartTransaction (started without since)

Revision ID: 0018_charger_profiles
Revises: 0017_late_meter
"""

import sqlalchemy as sa
from alembic import op

revision = "0018_charger_profiles"
down_revision = "0017_late_meter"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("charger", schema=None) as batch_op:
        batch_op.add_column(sa.Column("profiles_refused_at", sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table("charger", schema=None) as batch_op:
        batch_op.drop_column("profiles_refused_at")
