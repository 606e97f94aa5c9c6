"""Notifications: consent per channel, the outbox, free-port watches; password reset codes sent by SMS.

Revision ID: 0014_notifications
Revises: 0013_resident_room
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_notifications"
down_revision = "0013_resident_room"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "notify_consent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=12), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("granted_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], name=op.f("fk_notify_consent_user_id_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_consent")),
        sa.UniqueConstraint("user_id", "channel", name=op.f("uq_notify_consent_user_id")),
    )
    op.create_index(op.f("ix_notify_consent_user_id"), "notify_consent", ["user_id"])
    op.create_table(
        "notification",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=12), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("template", sa.String(length=32), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=120), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.DateTime(), nullable=False),
        sa.Column("last_error", sa.String(length=255), nullable=False),
        sa.Column("provider_ref", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], name=op.f("fk_notification_user_id_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_notification_dedupe_key")),
    )
    op.create_index(op.f("ix_notification_user_id"), "notification", ["user_id"])
    op.create_index(op.f("ix_notification_status"), "notification", ["status"])
    op.create_index(op.f("ix_notification_next_at"), "notification", ["next_at"])
    op.create_table(
        "port_free_watch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("shed_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("fired_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], name=op.f("fk_port_free_watch_user_id_user")),
        sa.ForeignKeyConstraint(["shed_id"], ["shed.id"], name=op.f("fk_port_free_watch_shed_id_shed")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_port_free_watch")),
    )
    op.create_index(op.f("ix_port_free_watch_user_id"), "port_free_watch", ["user_id"])
    op.create_index(op.f("ix_port_free_watch_shed_id"), "port_free_watch", ["shed_id"])
    op.create_index(op.f("ix_port_free_watch_expires_at"), "port_free_watch", ["expires_at"])
    op.create_table(
        "password_reset",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.Column("guesses", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], name=op.f("fk_password_reset_user_id_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_password_reset")),
    )
    op.create_index(op.f("ix_password_reset_user_id"), "password_reset", ["user_id"])
    op.create_index(op.f("ix_password_reset_created_at"), "password_reset", ["created_at"])


def downgrade():
    op.drop_table("password_reset")
    op.drop_table("port_free_watch")
    op.drop_table("notification")
    op.drop_table("notify_consent")
