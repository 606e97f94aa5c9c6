"""occupancy version: one row per site that the tick keeps, read by the grid's unchanged poll

Revision ID: 0009_occupancy_version
Revises: 0008_staff_admin
Create Date: 2026-12-02 11:30:00
"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0009_occupancy_version'
down_revision = '0008_staff_admin'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'occupancy_version',
        sa.Column('site_id', sa.Integer(), nullable=False),
        sa.Column('fingerprint', sa.String(length=40), nullable=False),
        sa.Column('offline_at', sa.DateTime(), nullable=True),
        sa.Column('charging', sa.Boolean(), nullable=False),
        sa.Column('refreshed_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['site_id'], ['site.id'], name=op.f('fk_occupancy_version_site_id_site')),
        sa.PrimaryKeyConstraint('site_id', name=op.f('pk_occupancy_version')),
    )


def downgrade():
    op.drop_table('occupancy_version')
