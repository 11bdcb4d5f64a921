"""Every table of the store, in one place (the Alembic migrations create them).

Defining them together means no module has to be imported for its side effect of registering a
table, and a reader sees the whole schema at once: mails and what was read from them, requests
and their decisions, the licence registry and the key pool, the outbox, events, the unlock
ledger and the review queue.
"""

import sqlalchemy as sa

metadata = sa.MetaData()

mails = sa.Table(
    "mails", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source", sa.String(500), nullable=False),
    sa.Column("mail_id", sa.String(500), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False, index=True),
    sa.Column("reference", sa.String(40), unique=True),
    sa.Column("message_id", sa.String(1000)),
    sa.Column("sender", sa.String(500), index=True),
    sa.Column("subject", sa.Text),
    sa.Column("kind", sa.String(40)),
    sa.Column("ignored", sa.String(40)),
    # received -> decided -> done; or duplicate / quarantined
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("outcome", sa.String(40)),  # one word for the log: answered, review, ignored...
    sa.Column("folder", sa.String(20)),  # where the mail is filed: processed/review/ignored/failed
    sa.Column("filed", sa.Boolean, nullable=False, default=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("error", sa.Text),
    sa.Column("duplicate_of", sa.Integer, sa.ForeignKey("mails.id")),
    sa.Column("extraction", sa.Text),  # JSON: the parse contract's object
    sa.Column("notes", sa.Text),  # JSON list of mail-level reasons (ignored, throttled, ...)
    sa.Column("size", sa.Integer),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("decided_at", sa.DateTime, index=True),  # the request throttle's window
    sa.Column("filed_at", sa.DateTime),
    # Which run is deciding the mail, until when (a lease: a run that dies lets it expire).
    sa.Column("claimed_by", sa.String(100)),
    sa.Column("claim_expires_at", sa.DateTime),
    # The numbers of the rules and templates versions the mail was decided with (migration
    # 0007; versions below): which admin edit made an answer. NULL before versions existed.
    sa.Column("rules_version", sa.Integer),
    sa.Column("templates_version", sa.Integer),
    sa.UniqueConstraint("source", "mail_id", name="uq_mails_source_mail_id"),
    # A reply is matched to the mail it answers by the Message-IDs it names (store.threads,
    # the unlock ledger); free text of up to 1,000 characters: a hash index on PostgreSQL.
    sa.Index("ix_mails_message_id", "message_id", postgresql_using="hash"),
)

requests = sa.Table(
    "requests", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("mail", sa.Integer, sa.ForeignKey("mails.id"), nullable=False, index=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("company", sa.Text, nullable=False),
    sa.Column("contact_name", sa.Text, nullable=False),
    sa.Column("contact_email", sa.String(500), nullable=False),
    sa.Column("system", sa.String(200), nullable=False),
    sa.Column("serial", sa.String(19), nullable=False, index=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("outcome", sa.String(20), nullable=False, index=True),
    sa.Column("hits", sa.Text, nullable=False),  # JSON list of {rule, reason}
    sa.Column("recipient", sa.String(500)),
    sa.Column("key", sa.Integer, sa.ForeignKey("keys.id")),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    # The per-company throttle looks requests up by company. Company names are free text of
    # any length: PostgreSQL gets a hash index (equality only, no btree key-size limit).
    sa.Index("ix_requests_company", "company", postgresql_using="hash"),
)

licences = sa.Table(
    "licences", metadata,
    sa.Column("serial", sa.String(19), primary_key=True),
    sa.Column("system", sa.String(200), nullable=False),
    sa.Column("company", sa.Text, nullable=False),
    sa.Column("contact_email", sa.String(500)),
    sa.Column("purchase_date", sa.Date, nullable=False),
    sa.Column("modality", sa.String(20), nullable=False),
    sa.Column("support_until", sa.Date),
    sa.Column("users", sa.Integer),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Index("ix_licences_company", "company", postgresql_using="hash"),
)

keys = sa.Table(
    "keys", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("system", sa.String(200), nullable=False),
    sa.Column("key", sa.String(200), nullable=False, unique=True),
    # One key per serial, ever: the unique constraint makes a second assignment impossible.
    sa.Column("serial", sa.String(19), unique=True),
    sa.Column("request", sa.Integer),
    sa.Column("imported_at", sa.DateTime, nullable=False),
    sa.Column("assigned_at", sa.DateTime),
    # A system's free keys (serial IS NULL) in one seek, not a walk through every free key of
    # every system (migration 0009).
    sa.Index("ix_keys_system_serial", "system", "serial"),
)

outbox = sa.Table(
    "outbox", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("mail", sa.Integer, sa.ForeignKey("mails.id"), index=True),
    sa.Column("purpose", sa.String(20), nullable=False),  # reply / keys / alert
    sa.Column("template", sa.String(100), nullable=False),
    sa.Column("message_id", sa.String(300), nullable=False, unique=True),
    sa.Column("envelope_from", sa.String(500), nullable=False),
    sa.Column("recipients", sa.Text, nullable=False),  # JSON list
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("status", sa.String(20), nullable=False, index=True),  # queued / sent / failed
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.DateTime),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("sent_at", sa.DateTime),
    # Sent, and its copy for the Sent folder not made yet (copies are made per batch, after
    # the sends; a crash in between leaves this set, and the next run makes the copy).
    sa.Column("copy_pending", sa.Boolean, nullable=False, default=False,
              server_default=sa.false(), index=True),
    # The versions the message was rendered with (migration 0007), as on its mail.
    sa.Column("rules_version", sa.Integer),
    sa.Column("templates_version", sa.Integer),
)

# Every recipient of every outbox message, normalised (lower case), so the per-sender throttle
# is an index range scan on (address, created_at) instead of a LIKE over every stored message.
# Written by `Store.enqueue` in the same transaction as the message; removed with it (ON DELETE
# CASCADE). So a migration must not rebuild `outbox` on SQLite (batch mode) with foreign keys
# on: dropping the old table would empty this one (rebuild it from outbox.recipients then).
outbox_recipients = sa.Table(
    "outbox_recipients", metadata,
    sa.Column("message", sa.Integer, sa.ForeignKey("outbox.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("address", sa.String(500), primary_key=True),
    sa.Column("purpose", sa.String(20), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Index("ix_outbox_recipients_address_created_at", "address", "created_at"),
)

events = sa.Table(
    "events", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", sa.DateTime, nullable=False, index=True),
    sa.Column("mail", sa.Integer, sa.ForeignKey("mails.id"), index=True),
    sa.Column("event", sa.String(60), nullable=False),
    sa.Column("detail", sa.Text),  # JSON
)

# --- versions of the rules and templates folders (migration 0007, mailbot.store.versions) --------

# Each distinct content of the rules folder or of the templates folder, numbered per kind in
# the order it was first used; its files are kept beside it so `rules diff` can show any two.
config_versions = sa.Table(
    "config_versions", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),  # rules / templates
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),  # sha256 over the paths and bytes
    sa.Column("first_used_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("kind", "hash", name="uq_config_versions_kind_hash"),
    sa.UniqueConstraint("kind", "number", name="uq_config_versions_kind_number"),
)

config_version_files = sa.Table(
    "config_version_files", metadata,
    sa.Column("version", sa.Integer, sa.ForeignKey("config_versions.id"), primary_key=True),
    sa.Column("path", sa.String(500), primary_key=True),  # relative, with "/"
    sa.Column("content", sa.LargeBinary, nullable=False),
)

# --- the unlock ledger ---------------------------------------------------------------------

unlocks = sa.Table(
    "unlocks", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("serial", sa.String(19), nullable=False, index=True),
    sa.Column("request", sa.Integer, sa.ForeignKey("requests.id")),  # the request that opened it
    sa.Column("mail", sa.Integer, sa.ForeignKey("mails.id"), nullable=False),  # ... and its mail
    sa.Column("number", sa.Integer),  # 1st, 2nd... unlock of the serial (set when decided)
    sa.Column("modality", sa.String(20)),
    # approved / in_review / awaiting_documents / rejected
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("reason", sa.Text),  # why it has this status, for people
    sa.Column("approved_by", sa.String(200)),  # "rules" or the operator's name
    sa.Column("documents", sa.Text, nullable=False),  # JSON list of file names received
    sa.Column("facts", sa.Text, nullable=False),  # JSON: the decision's facts (windows, texts)
    sa.Column("due_at", sa.DateTime),  # while in review
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("decided_at", sa.DateTime),  # approved or rejected
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

# Every mail that touched an entry: the one that asked, repetitions, replies with documents.
unlock_mails = sa.Table(
    "unlock_mails", metadata,
    sa.Column("unlock", sa.Integer, sa.ForeignKey("unlocks.id"), primary_key=True),
    sa.Column("mail", sa.Integer, sa.ForeignKey("mails.id"), primary_key=True, index=True),
    sa.Column("role", sa.String(20), nullable=False),  # asked / repeat / documents
)

# --- the review queue ----------------------------------------------------------------------

reviews = sa.Table(
    "reviews", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("mail", sa.Integer, sa.ForeignKey("mails.id"), nullable=False, index=True),
    sa.Column("request", sa.Integer, sa.ForeignKey("requests.id"), index=True),
    sa.Column("unlock", sa.Integer, sa.ForeignKey("unlocks.id")),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("reason", sa.String(40), nullable=False),  # a code: unknown_serial, policy, ...
    sa.Column("reason_text", sa.Text, nullable=False),  # the rule's reason, for people
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("due_at", sa.DateTime, nullable=False, index=True),
    sa.Column("snapshot", sa.Text, nullable=False),  # JSON: what was read, the rules' reasons
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("closed_at", sa.DateTime),
    sa.Column("closed_by", sa.String(200)),
    sa.Column("overdue_alerted_at", sa.DateTime),  # set once: each overdue task alerts once
    sa.Column("assigned_to", sa.String(200)),  # the console account that took it (migration 0006)
)

review_actions = sa.Table(
    "review_actions", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("review", sa.Integer, sa.ForeignKey("reviews.id"), nullable=False, index=True),
    # created / approve / reject / edit / repeat / overdue_alerted
    sa.Column("action", sa.String(30), nullable=False),
    sa.Column("operator", sa.String(200), nullable=False),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("changes", sa.Text),  # JSON: what the action changed
)

# --- the console's accounts (mailbot users, mailbot web) ---------------------------------------

users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(20), nullable=False),  # operator / admin
    sa.Column("password_hash", sa.String(200), nullable=False),  # argon2id, never the password
    sa.Column("disabled", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("last_login_at", sa.DateTime),
)

# API tokens are long random strings: a SHA-256 of one is as good as a slow hash, and lets a
# request be authenticated by one indexed look-up. The token itself is shown once, never kept.
api_tokens = sa.Table(
    "api_tokens", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("last_used_at", sa.DateTime),
    sa.Column("revoked_at", sa.DateTime),
)

# Browser sessions live here, not only in the signed cookie, so that logging out, disabling an
# account or its expiry ends a session even if someone kept a copy of the cookie.
web_sessions = sa.Table(
    "web_sessions", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),  # every form of the session carries it
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=False),
    sa.Column("revoked_at", sa.DateTime),
)

# Every login attempt, so the rate limit holds across console processes sharing the store.
login_attempts = sa.Table(
    "login_attempts", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", sa.DateTime, nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),  # as typed (lower case), known or not
    sa.Column("client", sa.String(100), nullable=False),  # the client's address
    sa.Column("outcome", sa.String(20), nullable=False),  # ok / failed / limited
    sa.Index("ix_login_attempts_name_at", "name", "at"),
    sa.Index("ix_login_attempts_client_at", "client", "at"),
)
