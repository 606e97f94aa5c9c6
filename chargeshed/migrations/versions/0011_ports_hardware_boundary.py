"""ports: telemetry store, outbox delivery, device links, chargers, gateways, port targets

Revision ID: 0011_hardware
Revises: 0010_money
Create Date: 2026-12-02 11:15:22.825196

Devices push readings into port_telemetry (latest per port) and meter_sample; device_link holds
each device's link state and the gateway holding it; charger registers OCPP stations (hashed
AuthorizationKey); gateway is the gateway registry with heartbeats. Existing ports stay on the
simulator (hardware_target 'sim'); queued commands keep going out.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011_hardware'
down_revision = '0010_money'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('device_link',
    sa.Column('device', sa.String(length=110), nullable=False),
    sa.Column('online', sa.Boolean(), nullable=False),
    sa.Column('heard_at', sa.DateTime(), nullable=True),
    sa.Column('changed_at', sa.DateTime(), nullable=True),
    sa.Column('gateway_id', sa.String(length=64), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=True),
    sa.PrimaryKeyConstraint('device', name=op.f('pk_device_link'))
    )
    with op.batch_alter_table('device_link', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_device_link_gateway_id'), ['gateway_id'], unique=False)

    op.create_table('gateway',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('host', sa.String(length=120), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(), nullable=False),
    sa.Column('stopped_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gateway'))
    )
    with op.batch_alter_table('gateway', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_gateway_heartbeat_at'), ['heartbeat_at'], unique=False)

    op.create_table('charger',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('charge_point_id', sa.String(length=48), nullable=False),
    sa.Column('connectors', sa.Integer(), nullable=False),
    sa.Column('key_hash', sa.String(length=255), nullable=False),
    sa.Column('operator_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['operator_id'], ['operator.id'], name=op.f('fk_charger_operator_id_operator')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_charger')),
    sa.UniqueConstraint('charge_point_id', name=op.f('uq_charger_charge_point_id'))
    )
    with op.batch_alter_table('charger', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_charger_operator_id'), ['operator_id'], unique=False)

    op.create_table('meter_sample',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('port_id', sa.Integer(), nullable=False),
    sa.Column('session_ref', sa.String(length=32), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('energy_wh', sa.BigInteger(), nullable=False),
    sa.Column('meter_wh', sa.BigInteger(), nullable=True),
    sa.Column('watts', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['port_id'], ['port.id'], name=op.f('fk_meter_sample_port_id_port')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_meter_sample'))
    )
    with op.batch_alter_table('meter_sample', schema=None) as batch_op:
        batch_op.create_index('ix_meter_sample_port_at', ['port_id', 'at'], unique=False)

    op.create_table('port_telemetry',
    sa.Column('port_id', sa.Integer(), nullable=False),
    sa.Column('target', sa.String(length=120), nullable=False),
    sa.Column('scheme', sa.String(length=12), nullable=False),
    sa.Column('device', sa.String(length=110), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=True),
    sa.Column('watts', sa.Integer(), nullable=False),
    sa.Column('relay_on', sa.Boolean(), nullable=False),
    sa.Column('fault', sa.String(length=80), nullable=True),
    sa.Column('temperature_c', sa.Double(), nullable=True),
    sa.Column('meter_wh', sa.BigInteger(), nullable=True),
    sa.Column('energy_wh', sa.BigInteger(), nullable=False),
    sa.Column('reading_at', sa.DateTime(), nullable=True),
    sa.Column('heard_at', sa.DateTime(), nullable=True),
    sa.Column('link_online', sa.Boolean(), nullable=False),
    sa.Column('link_changed_at', sa.DateTime(), nullable=True),
    sa.Column('session_ref', sa.String(length=32), nullable=True),
    sa.Column('session_started_at', sa.DateTime(), nullable=True),
    sa.Column('session_start_wh', sa.BigInteger(), nullable=False),
    sa.Column('session_stopped_at', sa.DateTime(), nullable=True),
    sa.Column('session_stop_wh', sa.BigInteger(), nullable=True),
    sa.Column('session_stop_reason', sa.String(length=24), nullable=True),
    sa.ForeignKeyConstraint(['port_id'], ['port.id'], name=op.f('fk_port_telemetry_port_id_port')),
    sa.PrimaryKeyConstraint('port_id', name=op.f('pk_port_telemetry'))
    )
    with op.batch_alter_table('port_telemetry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_port_telemetry_device'), ['device'], unique=False)
        batch_op.create_index(batch_op.f('ix_port_telemetry_target'), ['target'], unique=False)

    with op.batch_alter_table('port', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hardware_target', sa.String(length=120), server_default='sim', nullable=False))

    with op.batch_alter_table('port_command', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cap_seconds', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('next_attempt_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('claimed_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('target', sa.String(length=120), server_default='', nullable=False))
        batch_op.create_index('ix_port_command_open', ['status', 'port_id', 'id'], unique=False)



def downgrade():
    with op.batch_alter_table('port_command', schema=None) as batch_op:
        batch_op.drop_index('ix_port_command_open')
        batch_op.drop_column('target')
        batch_op.drop_column('claimed_at')
        batch_op.drop_column('claimed_by')
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('attempts')
        batch_op.drop_column('cap_seconds')

    with op.batch_alter_table('port', schema=None) as batch_op:
        batch_op.drop_column('hardware_target')

    with op.batch_alter_table('port_telemetry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_port_telemetry_target'))
        batch_op.drop_index(batch_op.f('ix_port_telemetry_device'))

    op.drop_table('port_telemetry')
    with op.batch_alter_table('meter_sample', schema=None) as batch_op:
        batch_op.drop_index('ix_meter_sample_port_at')

    op.drop_table('meter_sample')
    with op.batch_alter_table('charger', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_charger_operator_id'))

    op.drop_table('charger')
    with op.batch_alter_table('gateway', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_gateway_heartbeat_at'))

    op.drop_table('gateway')
    with op.batch_alter_table('device_link', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_device_link_gateway_id'))

    op.drop_table('device_link')
