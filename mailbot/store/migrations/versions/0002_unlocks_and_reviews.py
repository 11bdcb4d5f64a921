"""unlock ledger and review queue

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 09:00:00

The tables are defined in Python (mailbot.run.unlock_flow, mailbot.run.review) on the store's metadata;
this migration creates the same tables, portable to SQLite and PostgreSQL.
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('unlocks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('serial', sa.String(length=19), nullable=False),
    sa.Column('request', sa.Integer(), nullable=True),
    sa.Column('mail', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=True),
    sa.Column('modality', sa.String(length=20), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('approved_by', sa.String(length=200), nullable=True),
    sa.Column('documents', sa.Text(), nullable=False),
    sa.Column('facts', sa.Text(), nullable=False),
    sa.Column('due_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('decided_at', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['mail'], ['mails.id'], ),
    sa.ForeignKeyConstraint(['request'], ['requests.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('unlocks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_unlocks_serial'), ['serial'], unique=False)
        batch_op.create_index(batch_op.f('ix_unlocks_status'), ['status'], unique=False)

    op.create_table('unlock_mails',
    sa.Column('unlock', sa.Integer(), nullable=False),
    sa.Column('mail', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.ForeignKeyConstraint(['mail'], ['mails.id'], ),
    sa.ForeignKeyConstraint(['unlock'], ['unlocks.id'], ),
    sa.PrimaryKeyConstraint('unlock', 'mail')
    )
    with op.batch_alter_table('unlock_mails', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_unlock_mails_mail'), ['mail'], unique=False)

    op.create_table('reviews',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('mail', sa.Integer(), nullable=False),
    sa.Column('request', sa.Integer(), nullable=True),
    sa.Column('unlock', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.String(length=40), nullable=False),
    sa.Column('reason_text', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('due_at', sa.DateTime(), nullable=False),
    sa.Column('snapshot', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('closed_at', sa.DateTime(), nullable=True),
    sa.Column('closed_by', sa.String(length=200), nullable=True),
    sa.Column('overdue_alerted_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['mail'], ['mails.id'], ),
    sa.ForeignKeyConstraint(['request'], ['requests.id'], ),
    sa.ForeignKeyConstraint(['unlock'], ['unlocks.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('reviews', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reviews_due_at'), ['due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_reviews_mail'), ['mail'], unique=False)
        batch_op.create_index(batch_op.f('ix_reviews_request'), ['request'], unique=False)
        batch_op.create_index(batch_op.f('ix_reviews_status'), ['status'], unique=False)

    op.create_table('review_actions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('review', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=30), nullable=False),
    sa.Column('operator', sa.String(length=200), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('changes', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['review'], ['reviews.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('review_actions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_review_actions_review'), ['review'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('review_actions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_review_actions_review'))

    op.drop_table('review_actions')
    with op.batch_alter_table('reviews', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reviews_status'))
        batch_op.drop_index(batch_op.f('ix_reviews_request'))
        batch_op.drop_index(batch_op.f('ix_reviews_mail'))
        batch_op.drop_index(batch_op.f('ix_reviews_due_at'))

    op.drop_table('reviews')
    with op.batch_alter_table('unlock_mails', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_unlock_mails_mail'))

    op.drop_table('unlock_mails')
    with op.batch_alter_table('unlocks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_unlocks_status'))
        batch_op.drop_index(batch_op.f('ix_unlocks_serial'))

    op.drop_table('unlocks')
