"""Reads in autocommit: on PostgreSQL a pool of their own, never inside a transaction; the app's
engine options still apply to it."""

from __future__ import annotations

from sqlalchemy import text

from chargeshed import create_app
from chargeshed.extensions import AUTOCOMMIT_POOL_SIZE, autocommit_engine, db, dispose_engines


def test_reads_run_outside_any_transaction_with_the_apps_engine_options(db_url, tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": db_url,
            "SECRET_KEY": "test",
            "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "pool_size": 2},
        }
    )
    try:
        with app.app_context():
            reads = autocommit_engine()
            assert autocommit_engine() is reads  # made once per app
            with reads.connect() as connection:
                assert connection.execute(text("SELECT 1")).scalar_one() == 1
                if db.engine.dialect.name == "postgresql":
                    connection.execute(text("SELECT pg_sleep(0.01)"))
                    # Each statement is its own transaction: none began before this one.
                    assert connection.execute(text("SELECT now() = statement_timestamp()")).scalar_one()
            if db.engine.dialect.name == "postgresql":
                assert reads.pool is not db.engine.pool and reads.pool.size() == AUTOCOMMIT_POOL_SIZE
                assert reads.pool._pre_ping  # the app's options apply
    finally:
        dispose_engines(app)
