"""Per-user session token: sessions and remember-me cookies can be revoked.

Revision ID: 0016_session_token
Revises: 0015_monthly_passes
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0016_session_token"
down_revision = "0015_monthly_passes"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("user") as batch:
        batch.add_column(sa.Column("session_token", sa.String(length=32), nullable=True))
    bind = op.get_bind()
    user = sa.table("user", sa.column("id", sa.Integer), sa.column("session_token", sa.String))
    for (user_id,) in bind.execute(sa.select(user.c.id)).all():
        bind.execute(user.update().where(user.c.id == user_id).values(session_token=secrets.token_hex(16)))
    with op.batch_alter_table("user") as batch:
        batch.alter_column("session_token", existing_type=sa.String(length=32), nullable=False)


def downgrade():
    with op.batch_alter_table("user") as batch:
        batch.drop_column("session_token")
