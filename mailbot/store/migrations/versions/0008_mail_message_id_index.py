"""an index on the Message-ID of every mail

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 15:20:00

A customer's reply is matched to the mail it answers by the Message-IDs it names
(In-Reply-To, References: mailbot.store.threads), and the unlock ledger finds its entries the
same way. Without an index each such look-up read the whole `mails` table, so every reply
cost more as the history grew. Message-IDs are written by the customer's mail client, up to
1,000 characters of any script: on PostgreSQL the index is a hash index (equality and IN
only, which is all these look-ups ask; a btree refuses keys over ~2.7 KB).
"""
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_mails_message_id', 'mails', ['message_id'], unique=False,
                    postgresql_using='hash')


def downgrade() -> None:
    op.drop_index('ix_mails_message_id', table_name='mails', postgresql_using='hash')
