"""indexed throttle lookups

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 12:00:00

The two throttles scanned whole tables for every mail, so a pass slowed down as the history
grew. This revision gives them indexes, portable to SQLite and PostgreSQL:

- `outbox_recipients`: one row per recipient of every outbox message, the address normalised
  (lower case), indexed on (address, created_at); the per-sender throttle counts there instead
  of `LIKE '%"addr"%'` over `outbox.recipients`. Existing messages are copied in here.
- `mails.decided_at`, `requests.company` and `licences.company` for the per-serial and
  per-company request throttle. Company names are free text of any length, so on PostgreSQL
  their indexes are hash indexes (equality only, which is all the throttle asks; a btree
  refuses keys over ~2.7 KB).

And, for copying replies to the Sent folder in one MULTIAPPEND per batch instead of one APPEND
per reply, `outbox.copy_pending`: sent, copy not made yet (false for everything stored before).
"""
import json

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

_CHUNK = 1000


def upgrade() -> None:
    op.create_table('outbox_recipients',
    sa.Column('message', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(length=500), nullable=False),
    sa.Column('purpose', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['message'], ['outbox.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('message', 'address')
    )
    op.create_index('ix_outbox_recipients_address_created_at', 'outbox_recipients',
                    ['address', 'created_at'], unique=False)
    op.create_index('ix_mails_decided_at', 'mails', ['decided_at'], unique=False)
    op.create_index('ix_requests_company', 'requests', ['company'], unique=False,
                    postgresql_using='hash')
    op.create_index('ix_licences_company', 'licences', ['company'], unique=False,
                    postgresql_using='hash')
    _copy_recipients()
    # A plain ADD COLUMN (SQLite has it), not a batch rebuild of `outbox`: rebuilding drops
    # the old table, and with foreign keys on that deletes every outbox_recipients row.
    op.add_column('outbox', sa.Column('copy_pending', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    op.create_index('ix_outbox_copy_pending', 'outbox', ['copy_pending'], unique=False)


def _copy_recipients() -> None:
    """Fill outbox_recipients from the messages already stored (the JSON list of each)."""
    conn = op.get_bind()
    outbox = sa.table('outbox', sa.column('id', sa.Integer), sa.column('purpose', sa.String),
                      sa.column('recipients', sa.Text), sa.column('created_at', sa.DateTime))
    target = sa.table('outbox_recipients', sa.column('message', sa.Integer),
                      sa.column('address', sa.String), sa.column('purpose', sa.String),
                      sa.column('created_at', sa.DateTime))
    last = 0
    while True:
        rows = conn.execute(sa.select(outbox.c.id, outbox.c.purpose, outbox.c.recipients,
                                      outbox.c.created_at)
                            .where(outbox.c.id > last).order_by(outbox.c.id)
                            .limit(_CHUNK)).all()
        if not rows:
            return
        values = []
        for row in rows:
            try:
                addresses = json.loads(row.recipients or "[]")
            except ValueError:
                addresses = []
            # the same normalisation as mailbot.store.database.recipient_key
            if not isinstance(addresses, list):
                addresses = []
            for address in dict.fromkeys(str(a).strip().lower()[:500] for a in addresses if a):
                values.append({"message": row.id, "address": address, "purpose": row.purpose,
                               "created_at": row.created_at})
        if values:
            conn.execute(target.insert(), values)
        last = rows[-1].id


def downgrade() -> None:
    op.drop_index('ix_licences_company', table_name='licences', postgresql_using='hash')
    op.drop_index('ix_requests_company', table_name='requests', postgresql_using='hash')
    op.drop_index('ix_mails_decided_at', table_name='mails')
    op.drop_index('ix_outbox_recipients_address_created_at', table_name='outbox_recipients')
    op.drop_table('outbox_recipients')
    op.drop_index('ix_outbox_copy_pending', table_name='outbox')
    with op.batch_alter_table('outbox', schema=None) as batch_op:  # SQLite: a rebuild
        batch_op.drop_column('copy_pending')
