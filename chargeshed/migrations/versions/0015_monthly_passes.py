"""包月 monthly passes: plans per site, residents' passes, charges made on a pass.

Revision ID: 0015_monthly_passes
Revises: 0014_notifications
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_monthly_passes"
down_revision = "0014_notifications"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "pass_plan",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("price_fen", sa.Integer(), nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("charges_per_day", sa.Integer(), nullable=False),
        sa.Column("hours_per_charge", sa.Integer(), nullable=False),
        sa.Column("max_watts", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_pass_plan_site_id_site")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pass_plan")),
    )
    op.create_index(op.f("ix_pass_plan_site_id"), "pass_plan", ["site_id"])
    op.create_table(
        "monthly_pass",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("price_fen", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("refunded_fen", sa.Integer(), nullable=False),
        sa.Column("refunded_on", sa.Date(), nullable=True),
        sa.Column("reminded_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], name=op.f("fk_monthly_pass_user_id_user")),
        sa.ForeignKeyConstraint(["plan_id"], ["pass_plan.id"], name=op.f("fk_monthly_pass_plan_id_pass_plan")),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_monthly_pass_site_id_site")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monthly_pass")),
    )
    op.create_index(op.f("ix_monthly_pass_user_id"), "monthly_pass", ["user_id"])
    op.create_index(op.f("ix_monthly_pass_plan_id"), "monthly_pass", ["plan_id"])
    op.create_index(op.f("ix_monthly_pass_site_id"), "monthly_pass", ["site_id"])
    op.create_index(op.f("ix_monthly_pass_status"), "monthly_pass", ["status"])
    op.create_table(
        "pass_use",
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("pass_id", sa.Integer(), nullable=False),
        sa.Column("used_on", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["charge_session.id"],
                                name=op.f("fk_pass_use_session_id_charge_session")),
        sa.ForeignKeyConstraint(["pass_id"], ["monthly_pass.id"], name=op.f("fk_pass_use_pass_id_monthly_pass")),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_pass_use")),
    )
    op.create_index(op.f("ix_pass_use_pass_id"), "pass_use", ["pass_id"])
    op.create_index(op.f("ix_pass_use_used_on"), "pass_use", ["used_on"])


def downgrade():
    op.drop_table("pass_use")
    op.drop_table("monthly_pass")
    op.drop_table("pass_plan")
