"""production: leave room in hot tables' pages so the supervisor's frequent updates stay in place

Revision ID: 0006
Revises: 0001
Create Date: 2026-11-25 09:30:00

The supervisor rewrites every live session's measurements and every port's last reading each
tick. With free space in each page PostgreSQL updates such rows in place (HOT updates: no index
entries to write), which makes a tick over 10,000 ports several times cheaper. Existing pages keep
their layout until they are rewritten (VACUUM FULL); new pages get the room at once.
SQLite has no such setting: nothing to do there.
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0001'
branch_labels = None
depends_on = None

TABLES = ("port", "charge_session", "ledger_account")
FILLFACTOR = 70


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} SET (fillfactor = {FILLFACTOR})")


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
