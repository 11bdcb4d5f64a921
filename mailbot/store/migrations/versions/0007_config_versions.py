"""versions of the rules and templates folders, and which ones each decision and reply used

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 14:00:00

Issue 12 §2: each distinct content of the rules folder and of the templates folder is a
numbered version kept with its files (`config_versions`, `config_version_files`), and every
mail decided and every message queued records the numbers of the versions it was made with
(NULL for what was stored before). Plain ADD COLUMNs: a batch rebuild of `outbox` on SQLite
would empty `outbox_recipients` (see mailbot.store.schema).
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_STAMPED = ('mails', 'outbox')
_COLUMNS = ('rules_version', 'templates_version')


def upgrade() -> None:
    op.create_table('config_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('first_used_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('kind', 'hash', name='uq_config_versions_kind_hash'),
    sa.UniqueConstraint('kind', 'number', name='uq_config_versions_kind_number')
    )
    op.create_table('config_version_files',
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('path', sa.String(length=500), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['version'], ['config_versions.id'], ),
    sa.PrimaryKeyConstraint('version', 'path')
    )
    for table in _STAMPED:
        for column in _COLUMNS:
            op.add_column(table, sa.Column(column, sa.Integer(), nullable=True))


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == 'sqlite'
    for table in _STAMPED:
        for column in _COLUMNS:
            if sqlite:  # SQLite >= 3.35 drops a column in place: no rebuild (see above)
                op.execute(f'ALTER TABLE {table} DROP COLUMN {column}')
            else:
                op.drop_column(table, column)
    op.drop_table('config_version_files')
    op.drop_table('config_versions')
