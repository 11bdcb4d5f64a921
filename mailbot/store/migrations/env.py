"""Alembic environment: upgrades run on the connection the Store hands over."""

from alembic import context

from mailbot.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic` run by hand: mailbot always passes its connection
    raise RuntimeError("run migrations through mailbot (Store.migrate), not the alembic CLI")

context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
