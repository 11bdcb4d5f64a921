"""mail claims: one run decides a mail

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 10:00:00

Two instances on one mailbox and one store could both see a recorded mail as `received` and
both decide it. A run now claims a mail before deciding it, with a conditional update
(`received` and unclaimed or lease expired -> claimed by this run until `claim_expires_at`);
exactly one run wins, and a run that dies leaves a lease that expires.
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('mails', sa.Column('claimed_by', sa.String(length=100), nullable=True))
    op.add_column('mails', sa.Column('claim_expires_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('mails', schema=None) as batch_op:
        batch_op.drop_column('claim_expires_at')
        batch_op.drop_column('claimed_by')
