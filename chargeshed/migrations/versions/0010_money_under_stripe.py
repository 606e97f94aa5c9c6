"""money under real Stripe behaviour: business time on ledger transactions, account currencies,
random idempotency keys, settlement-currency fees, refunds made outside ChargeShed

Revision ID: 0010_money
Revises: 0009_occupancy_version
Create Date: 2026-12-02 11:30:00

Data: every ledger transaction gets booked_at = created_at (its business time so far); settle
transactions get their session's end instant. Fee entries are turned to the refunds' sign
convention (external:<provider> +fee, fees:<provider> -fee) and the two accounts' cached
balances recomputed from their entries.
"""
from alembic import op
import sqlalchemy as sa


revision = "0010_money"
down_revision = "0009_occupancy_version"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("ledger_account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("currency", sa.String(length=3), nullable=False, server_default="cny"))
    with op.batch_alter_table("ledger_txn", schema=None) as batch_op:
        batch_op.add_column(sa.Column("booked_at", sa.DateTime(), nullable=True))
    op.execute("UPDATE ledger_txn SET booked_at = created_at")
    op.execute(
        "UPDATE ledger_txn SET booked_at = (SELECT charge_session.ended_at FROM charge_session "
        "WHERE ledger_txn.ref = 'settle:' || CAST(charge_session.id AS VARCHAR(20))) "
        "WHERE kind = 'settle' AND EXISTS (SELECT 1 FROM charge_session WHERE charge_session.ended_at IS NOT NULL "
        "AND ledger_txn.ref = 'settle:' || CAST(charge_session.id AS VARCHAR(20)))")
    with op.batch_alter_table("ledger_txn", schema=None) as batch_op:
        batch_op.alter_column("booked_at", existing_type=sa.DateTime(), nullable=False)
        batch_op.create_index(batch_op.f("ix_ledger_txn_booked_at"), ["booked_at"], unique=False)

    # Fees: the refunds' sign convention (money leaving the provider brings external:<p> up).
    op.execute("UPDATE ledger_entry SET amount_fen = -amount_fen WHERE txn_id IN "
               "(SELECT id FROM ledger_txn WHERE kind = 'payment_fee')")
    op.execute("UPDATE ledger_account SET balance_fen = (SELECT COALESCE(SUM(amount_fen), 0) FROM ledger_entry "
               "WHERE ledger_entry.account_id = ledger_account.id) "
               "WHERE code LIKE 'fees:%' OR code LIKE 'external:%'")

    with op.batch_alter_table("top_up", schema=None) as batch_op:
        batch_op.add_column(sa.Column("checkout_key", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("fee_currency", sa.String(length=3), nullable=True))
        batch_op.add_column(sa.Column("exchange_rate", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("problem", sa.String(length=40), nullable=False, server_default=""))
        batch_op.create_unique_constraint(batch_op.f("uq_top_up_checkout_key"), ["checkout_key"])
    with op.batch_alter_table("top_up_refund", schema=None) as batch_op:
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("key_created_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("submitted_at", sa.DateTime(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_top_up_refund_idempotency_key"), ["idempotency_key"])
    # Refunds sent before: a later resubmission looks them up first.
    op.execute("UPDATE top_up_refund SET submitted_at = created_at")

    op.create_table(
        "external_refund",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=12), nullable=False),
        sa.Column("provider_ref", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("topup_id", sa.Integer(), nullable=True),
        sa.Column("payment_ref", sa.String(length=255), nullable=True),
        sa.Column("amount_fen", sa.Integer(), nullable=False),
        sa.Column("taken_fen", sa.Integer(), nullable=False),
        sa.Column("shortfall_fen", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["topup_id"], ["top_up.id"], name=op.f("fk_external_refund_topup_id_top_up")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_external_refund")),
        sa.UniqueConstraint("provider_ref", name=op.f("uq_external_refund_provider_ref")),
    )
    with op.batch_alter_table("external_refund", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_external_refund_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_external_refund_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_external_refund_topup_id"), ["topup_id"], unique=False)


def downgrade():
    op.drop_table("external_refund")
    with op.batch_alter_table("top_up_refund", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_top_up_refund_idempotency_key"), type_="unique")
        batch_op.drop_column("submitted_at")
        batch_op.drop_column("key_created_at")
        batch_op.drop_column("idempotency_key")
    with op.batch_alter_table("top_up", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_top_up_checkout_key"), type_="unique")
        batch_op.drop_column("problem")
        batch_op.drop_column("exchange_rate")
        batch_op.drop_column("fee_currency")
        batch_op.drop_column("checkout_key")
    op.execute("UPDATE ledger_entry SET amount_fen = -amount_fen WHERE txn_id IN "
               "(SELECT id FROM ledger_txn WHERE kind = 'payment_fee')")
    op.execute("UPDATE ledger_account SET balance_fen = (SELECT COALESCE(SUM(amount_fen), 0) FROM ledger_entry "
               "WHERE ledger_entry.account_id = ledger_account.id) "
               "WHERE code LIKE 'fees:%' OR code LIKE 'external:%'")
    with op.batch_alter_table("ledger_txn", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_txn_booked_at"))
        batch_op.drop_column("booked_at")
    with op.batch_alter_table("ledger_account", schema=None) as batch_op:
        batch_op.drop_column("currency")
