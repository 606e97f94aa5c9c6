"""Residents give their room number (房号, e.g. 1201) besides building and unit.

Revision ID: 0013_resident_room
Revises: 0012_ocpp
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_resident_room"
down_revision = "0012_ocpp"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("user") as batch:
        batch.add_column(sa.Column("room", sa.String(length=8), nullable=True))


def downgrade():
    with op.batch_alter_table("user") as batch:
        batch.drop_column("room")
