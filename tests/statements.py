"""Counting the SQL statements a request runs, on every engine the app reads through."""

from __future__ import annotations

import contextlib

from sqlalchemy import event

from chargeshed.extensions import autocommit_engine, db


def _in_autocommit(conn) -> bool:
    """Whether the statement runs outside any transaction (the driver's connection in autocommit)."""
    raw = conn.connection.dbapi_connection
    return bool(raw.autocommit) if conn.dialect.name == "postgresql" else raw.isolation_level is None


@contextlib.contextmanager
def counted(autocommit: list[bool] | None = None):
    """Collect the SQL statements run inside the block (and in `autocommit`, whether each ran outside
    any transaction, as a one-statement read may: no BEGIN and ROLLBACK round trips). Call inside an
    app context: the app's engine and its reads engine (a pool of its own on PostgreSQL) are both heard."""
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)
        if autocommit is not None:
            autocommit.append(_in_autocommit(conn))

    reads = autocommit_engine()
    engines = [db.engine] + ([reads] if reads.pool is not db.engine.pool else [])
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)
