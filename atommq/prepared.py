"""Statements prepared once: compiled for a database the first time it runs them, then run
through the driver with nothing but a request's values.

SQLAlchemy's own `Connection.execute` finds its cached compilation of a statement by walking
the whole statement on every call, which for the publish INSERT (fourteen values) cost more than
the INSERT itself: in-process on SQLite, a publish's two statements took 0.33 ms (median) through
`execute` and 0.24 ms so. On SQLite they run on the driver's cursor itself (see `run`). Errors
are still SQLAlchemy's, and so is the connection, its transaction and its pool. No XML, no HTTP;
the statements are statements.py's, run by session.py and consumers.py.
"""

import weakref
from collections.abc import Iterator, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.compiler import SQLCompiler


class _Compiled:
    """One statement's SQL for one dialect, and how a request's values become its parameters."""

    def __init__(self, statement: sa.ClauseElement, dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)  # a statement's, not DDL's
        self.sql = str(compiled)
        # Values the statement holds itself (the 1 of last_seq + 1, an OFFSET of 0); binds
        # also lists them under an anonymous "%(...)s" key, which the SQL does not use.
        self.defaults = {
            name: bind.value
            for name, bind in compiled.binds.items()
            if not bind.required and not name.startswith("%(")
        }
        # Conversions SQLAlchemy would make (none for the types AtomMQ's hot statements use).
        processors = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect)
            for name, bind in compiled.binds.items()
        }
        self.processors = {name: p for name, p in processors.items() if p is not None}
        # Positional drivers (sqlite3's ?, PyMySQL's %s) take a tuple in this order; named
        # ones (psycopg's %(name)s) a mapping.
        self.order: tuple[str, ...] | None = None
        if compiled.positiontup is not None:
            self.order = tuple(compiled.positiontup)
        # SQL that SQLAlchemy finishes only when it runs (expanding IN lists, some dialects'
        # LIMIT): left to SQLAlchemy.
        self.deferred = "__[POSTCOMPILE_" in self.sql

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        given = {**self.defaults, **values}
        for name, process in self.processors.items():
            given[name] = process(given[name])
        if self.order is None:
            return given
        return tuple(given[name] for name in self.order)


class Prepared:
    """A statement built once per process (at import) and compiled once per database engine."""

    def __init__(self, statement: sa.Executable) -> None:
        self.statement = statement
        self._compiled: weakref.WeakKeyDictionary[sa.Dialect, _Compiled] = weakref.WeakKeyDictionary()

    def run(self, connection: sa.Connection, values: Mapping[str, Any]) -> Any:
        """The statement's result (a CursorResult), with `values` for its bind parameters."""
        dialect = connection.dialect
        compiled = self._compiled.get(dialect)
        if compiled is None:
            assert isinstance(self.statement, sa.ClauseElement)
            compiled = self._compiled[dialect] = _Compiled(self.statement, dialect)
        if compiled.deferred:
            return connection.execute(self.statement, dict(values))
        if dialect.name != "sqlite":
            return connection.exec_driver_sql(compiled.sql, compiled.parameters(values))
        # On SQLite, on the driver's cursor itself: SQLAlchemy's execution context around the
        # statement was an eighth of a publish's instructions (callgrind: 0.09 M of 0.78 M for
        # its two statements). sqlite3 returns the types the columns hold (str, int, bytes), so
        # there is nothing to convert; a database server's round trip dwarfs what this saves.
        parameters = compiled.parameters(values)
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(compiled.sql, parameters)
        except dialect.loaded_dbapi.Error as error:
            # As SQLAlchemy would have raised it: database.meaning reads that.
            wrapped = sa.exc.DBAPIError.instance(
                compiled.sql, parameters, error, dialect.loaded_dbapi.Error, dialect=dialect
            )
            raise wrapped from error
        return _Rows(cursor)


class _Rows:
    """A driver cursor's rows (plain tuples), with the part of SQLAlchemy's Result that the
    store uses: first(), all(), iteration, rowcount."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor
        self.rowcount = cursor.rowcount

    def first(self) -> Any:
        row = self._cursor.fetchone()
        self._cursor.close()
        return row

    def all(self) -> list[Any]:
        rows = self._cursor.fetchall()
        self._cursor.close()
        return list(rows)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.all())
