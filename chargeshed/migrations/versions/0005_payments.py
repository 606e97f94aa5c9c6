"""payments: cash-outs and their refunds, goodwill session refunds, top-up net amount

Revision ID: 0005
Revises: 0001
Create Date: 2026-11-25 07:46:10.154082

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('cash_out',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('amount_fen', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=12), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('request_key', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('settled_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_cash_out_user_id_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cash_out')),
    sa.UniqueConstraint('request_key', name=op.f('uq_cash_out_request_key'))
    )
    with op.batch_alter_table('cash_out', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cash_out_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_cash_out_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_cash_out_user_id'), ['user_id'], unique=False)

    op.create_table('session_refund',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=False),
    sa.Column('amount_fen', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['session_id'], ['charge_session.id'], name=op.f('fk_session_refund_session_id_charge_session')),
    sa.ForeignKeyConstraint(['staff_id'], ['user.id'], name=op.f('fk_session_refund_staff_id_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_session_refund')),
    sa.UniqueConstraint('session_id', name=op.f('uq_session_refund_session_id'))
    )
    with op.batch_alter_table('session_refund', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_session_refund_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_session_refund_staff_id'), ['staff_id'], unique=False)

    op.create_table('top_up_refund',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cashout_id', sa.Integer(), nullable=False),
    sa.Column('topup_id', sa.Integer(), nullable=False),
    sa.Column('amount_fen', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('provider_ref', sa.String(length=255), nullable=True),
    sa.Column('failure_reason', sa.String(length=80), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('settled_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['cashout_id'], ['cash_out.id'], name=op.f('fk_top_up_refund_cashout_id_cash_out')),
    sa.ForeignKeyConstraint(['topup_id'], ['top_up.id'], name=op.f('fk_top_up_refund_topup_id_top_up')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_top_up_refund')),
    sa.UniqueConstraint('provider_ref', name=op.f('uq_top_up_refund_provider_ref'))
    )
    with op.batch_alter_table('top_up_refund', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_top_up_refund_cashout_id'), ['cashout_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_top_up_refund_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_top_up_refund_topup_id'), ['topup_id'], unique=False)

    with op.batch_alter_table('top_up', schema=None) as batch_op:
        batch_op.add_column(sa.Column('net_fen', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('top_up', schema=None) as batch_op:
        batch_op.drop_column('net_fen')

    with op.batch_alter_table('top_up_refund', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_top_up_refund_topup_id'))
        batch_op.drop_index(batch_op.f('ix_top_up_refund_status'))
        batch_op.drop_index(batch_op.f('ix_top_up_refund_cashout_id'))

    op.drop_table('top_up_refund')
    with op.batch_alter_table('session_refund', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_session_refund_staff_id'))
        batch_op.drop_index(batch_op.f('ix_session_refund_created_at'))

    op.drop_table('session_refund')
    with op.batch_alter_table('cash_out', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cash_out_user_id'))
        batch_op.drop_index(batch_op.f('ix_cash_out_status'))
        batch_op.drop_index(batch_op.f('ix_cash_out_created_at'))

    op.drop_table('cash_out')
