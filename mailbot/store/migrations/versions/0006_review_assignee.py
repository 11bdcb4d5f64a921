"""review assignee: who took a task

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 10:00:00

The console's review queue (issue 9) lets an operator take a task ("assign to me") so the
others see it is being worked; the name is the console account's. Informational only: whoever
acts first still wins, by the conditional close of `mailbot.store.reviews`.
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('reviews', sa.Column('assigned_to', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('reviews', schema=None) as batch_op:
        batch_op.drop_column('assigned_to')
