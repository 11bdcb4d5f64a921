"""the key pool's free keys found through an index, whatever the system

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 23:00:00

A key is assigned by taking the first free key of the request's system (`serial IS NULL`,
lowest id). With an index on `system` alone, SQLite answered that through the unique index on
`serial` instead: it walked every free key, of every system, in id order, until one was of the
system asked for. A pool imported one system after another made each assignment for the last
system read every free key of the others: 0.5 ms at 8,000 of them, growing with the pool. An
index on (system, serial) goes straight to the system's free keys (7 us), and serves what
the old index on `system` did.
"""
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_keys_system_serial', 'keys', ['system', 'serial'], unique=False)
    op.drop_index('ix_keys_system', table_name='keys')


def downgrade() -> None:
    op.create_index('ix_keys_system', 'keys', ['system'], unique=False)
    op.drop_index('ix_keys_system_serial', table_name='keys')
