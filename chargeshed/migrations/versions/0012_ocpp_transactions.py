"""ocpp_transaction: the transaction ids handed to OCPP stations

Revision ID: 0012_ocpp
Revises: 0011_hardware
Create Date: 2026-12-02 11:35:00

One row per StartTransaction a station sent (its id is the transactionId we answered with), with
the meter readings and times of the start and the stop. A repeated StartTransaction matches the
unique key and gets the same id.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012_ocpp'
down_revision = '0011_hardware'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('ocpp_transaction',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('charge_point_id', sa.String(length=48), nullable=False),
    sa.Column('connector', sa.Integer(), nullable=False),
    sa.Column('id_tag', sa.String(length=20), nullable=False),
    sa.Column('session_ref', sa.String(length=32), nullable=True),
    sa.Column('meter_start_wh', sa.BigInteger(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('meter_stop_wh', sa.BigInteger(), nullable=True),
    sa.Column('stopped_at', sa.DateTime(), nullable=True),
    sa.Column('stop_reason', sa.String(length=24), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ocpp_transaction')),
    sa.UniqueConstraint('charge_point_id', 'connector', 'id_tag', 'started_at', name='uq_ocpp_transaction_start')
    )
    with op.batch_alter_table('ocpp_transaction', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ocpp_transaction_charge_point_id'), ['charge_point_id'], unique=False)


def downgrade():
    with op.batch_alter_table('ocpp_transaction', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ocpp_transaction_charge_point_id'))

    op.drop_table('ocpp_transaction')
