"""staff administration: temporary passwords that must be changed, and the staff action log

Revision ID: 0008_staff_admin
Revises: 0007
Create Date: 2026-12-02 12:15:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0008_staff_admin"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("user") as batch:
        batch.add_column(sa.Column("must_change_password", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "staff_action",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=120), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column("operator_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["actor_id"], ["user.id"], name=op.f("fk_staff_action_actor_id_user")),
        sa.ForeignKeyConstraint(["operator_id"], ["operator.id"], name=op.f("fk_staff_action_operator_id_operator")),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_staff_action_site_id_site")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_action")),
    )
    with op.batch_alter_table("staff_action") as batch:
        batch.create_index(batch.f("ix_staff_action_at"), ["at"])
        batch.create_index(batch.f("ix_staff_action_actor_id"), ["actor_id"])
        batch.create_index(batch.f("ix_staff_action_operator_id"), ["operator_id"])
        batch.create_index(batch.f("ix_staff_action_site_id"), ["site_id"])


def downgrade():
    op.drop_table("staff_action")
    with op.batch_alter_table("user") as batch:
        batch.drop_column("must_change_password")
