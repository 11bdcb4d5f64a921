"""The per-mail statements of the store, run on the driver's cursor.

Why: a pass runs about 14 statements a mail. For each `Connection.execute`, SQLAlchemy Core
builds the statement's cache key, looks its compiled form up, makes an execution context, turns
the parameters into the driver's and wraps the cursor in a result: about 20 us a statement on
these machines, four times what SQLite itself spends on one of them. In a pass that was a fifth
of the main process's CPU (py-spy), and the main process is what a pass waits for.

A `Prepared` statement is still written in SQLAlchemy Core and compiled by SQLAlchemy, once per
dialect and set of parameter names; a run then does only what is left: the parameters in the
compiled order, through SQLAlchemy's own bind processors for the dialect (a datetime as
SQLite's text, say), the cursor, and the rows back through SQLAlchemy's result processors. So
what reaches the database and what comes back are what `Connection.execute` gives. It runs in
the connection's transaction (the same driver connection). Errors come out as SQLAlchemy's
(`DBAPIError.instance`: IntegrityError, OperationalError...), so `store_faults` and the callers
see no difference; a lost server connection is invalidated, as SQLAlchemy does; and the
engine's cursor events (the tests' and the benchmarks' statement counters) still see every
statement (with no execution context: None).

What it does not do, it refuses when the statement is first compiled (a TypeError, which the
tests meet at once): lists expanded into IN (...), and column defaults computed in Python.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect


class Prepared:
    """A Core statement run on the cursor of the connection it is given (see the module)."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._plans: dict[tuple[str, frozenset[str]], _Plan] = {}

    def run(self, conn: Connection, params: Mapping[str, Any]) -> None:
        """Execute with `params`."""
        plan = self._plan(conn.dialect, params)
        plan.execute(conn, plan.parameters(params), many=False)

    def run_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """One executemany of `rows` (each with the same names)."""
        if rows:
            plan = self._plan(conn.dialect, rows[0])
            plan.execute(conn, [plan.parameters(row) for row in rows], many=True)

    def rowcount(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Execute with `params`; how many rows it changed."""
        plan = self._plan(conn.dialect, params)
        return plan.execute(conn, plan.parameters(params), many=False).rowcount

    def first(self, conn: Connection, params: Mapping[str, Any]) -> Any | None:
        """The first row (a named tuple, its values as SQLAlchemy would give them), or None."""
        plan, rows = self._fetch(conn, params)
        return plan.row(rows[0]) if rows else None

    def all(self, conn: Connection, params: Mapping[str, Any]) -> list[Any]:
        """Every row (named tuples, as `first`)."""
        plan, rows = self._fetch(conn, params)
        return [plan.row(r) for r in rows]

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any | None:
        """The first column of the first row (an INSERT's RETURNING id, a count), or None."""
        plan, rows = self._fetch(conn, params)
        return plan.value(rows[0][0], 0) if rows else None

    def _fetch(self, conn: Connection, params: Mapping[str, Any]) -> tuple[_Plan, list[Any]]:
        """The plan for `params` and the driver's rows, unconverted."""
        plan = self._plan(conn.dialect, params)
        return plan, plan.execute(conn, plan.parameters(params), many=False).fetchall()

    def _plan(self, dialect: Dialect, params: Mapping[str, Any]) -> _Plan:
        key = (dialect.name, frozenset(params))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = _Plan(self.statement, dialect, sorted(params))
        return plan


class _Plan:
    """The statement compiled for one dialect and one set of parameter names."""

    def __init__(self, statement: Any, dialect: Dialect, names: list[str]) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=names)
        self.sql = compiled.string
        self.dialect = dialect
        if compiled.update_prefetch:
            raise TypeError(f"{self.sql}: a column's onupdate is computed in Python")
        if getattr(compiled, "escaped_bind_names", None):
            raise TypeError(f"{self.sql}: bind names the driver would see escaped")
        self.fixed = {}  # values the statement carries itself, and scalar column defaults
        for column in compiled.insert_prefetch:
            default = column.default
            if default is None or not default.is_scalar:
                raise TypeError(f"{self.sql}: {column.key}'s default is computed in Python")
            self.fixed[column.key] = default.arg
        processors = {}
        for name, bind in compiled.binds.items():
            if bind.expanding:
                raise TypeError(f"{self.sql}: {name} is a list expanded into IN (...)")
            if name not in names and name not in self.fixed:
                if bind.required:
                    raise TypeError(f"{self.sql}: no value for {name}")
                self.fixed[name] = bind.effective_value  # a value written in the statement
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors[name] = processor
        self.processors = processors
        self.order = list(compiled.positiontup) if dialect.positional else None
        columns = list(getattr(statement, "exported_columns", ()) or ())
        self.result_processors = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in columns]
        self.converted = [(position, processor)  # the columns whose values are converted
                          for position, processor in enumerate(self.result_processors)
                          if processor is not None]
        self.Row = (collections.namedtuple("Row", [c.key for c in columns], rename=True)
                    if columns else None)

    def parameters(self, params: Mapping[str, Any]) -> Any:
        values = {**self.fixed, **params} if self.fixed else dict(params)
        for name, processor in self.processors.items():
            value = values.get(name)
            if value is not None:
                values[name] = processor(value)
        if self.order is not None:
            return tuple(values.get(name) for name in self.order)
        return values

    def execute(self, conn: Connection, parameters: Any, *, many: bool) -> Any:
        cursor = conn.connection.cursor()
        dispatch = conn.dispatch
        if dispatch.before_cursor_execute:
            dispatch.before_cursor_execute(conn, cursor, self.sql, parameters, None, many)
        try:
            if many:
                cursor.executemany(self.sql, parameters)
            else:
                cursor.execute(self.sql, parameters)
        except self.dialect.loaded_dbapi.Error as exc:
            # A lost server connection is dropped from the pool, as SQLAlchemy drops it.
            gone = self.dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)
            if gone:
                conn.invalidate(exc)
            raise sa.exc.DBAPIError.instance(
                self.sql, parameters, exc, self.dialect.loaded_dbapi.Error,
                connection_invalidated=gone, dialect=self.dialect) from exc
        if dispatch.after_cursor_execute:
            dispatch.after_cursor_execute(conn, cursor, self.sql, parameters, None, many)
        return cursor

    def row(self, values: Sequence[Any]) -> Any:
        assert self.Row is not None, self.sql
        if len(values) != len(self.result_processors):
            raise TypeError(f"{self.sql}: {len(values)} columns back, "
                            f"{len(self.result_processors)} expected")
        if self.converted:
            values = list(values)
            for position, processor in self.converted:
                if values[position] is not None:
                    values[position] = processor(values[position])
        return self.Row._make(values)

    def value(self, value: Any, position: int) -> Any:
        processor = self.result_processors[position] if self.result_processors else None
        return value if processor is None or value is None else processor(value)
