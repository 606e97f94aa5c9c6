"""Flask extensions, created unbound; create_app() binds them."""

from __future__ import annotations

from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from htmx_flask import Htmx
from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with a naming convention so migrations name constraints stably."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
babel = Babel()
limiter = Limiter(key_func=get_remote_address, default_limits=[])
htmx = Htmx()


def nest_sqlite_savepoints(engine: Engine) -> None:
    """Make a savepoint on SQLite sit inside the caller's transaction, as it does on PostgreSQL.

    Python's sqlite3 driver opens a transaction only before a data-changing statement, so a
    SAVEPOINT issued first starts a transaction of its own and its RELEASE commits: work that
    the caller later rolled back stayed stored. A transaction is opened before such a savepoint.
    """

    @event.listens_for(engine, "savepoint")
    def _begin_before_savepoint(connection, _name) -> None:
        raw = connection.connection.dbapi_connection
        if not raw.in_transaction:
            raw.execute("BEGIN IMMEDIATE")


def autocommit_engine() -> Engine:
    """The app's database in autocommit, for reads (call inside an app context).

    For reads of single statements that need no transaction around them (a statement is consistent
    on its own): no BEGIN and ROLLBACK round trips. Pass it as the bind of a session read
    (`bind_arguments={"bind": autocommit_engine()}`) or connect from it; never write through it.
    On PostgreSQL it has a small pool of its own whose connections stay in autocommit for life, so a
    checkout neither switches the isolation level there and back nor resets the connection with a
    rollback; on SQLite (one file, no round trips) it shares the app's pool.
    """
    from flask import current_app

    made = current_app.extensions.get("autocommit_engine")
    if made is None or made[0] is not db.engine:
        made = current_app.extensions["autocommit_engine"] = (db.engine, _autocommit_twin(current_app, db.engine))
    return made[1]


def _autocommit_twin(app, engine: Engine) -> Engine:
    if engine.dialect.name == "sqlite":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    # The app's engine options (pre-ping, timeouts) apply; the pool's size and mode are its own.
    options = {
        **app.config.get("SQLALCHEMY_ENGINE_OPTIONS", {}),
        "isolation_level": "AUTOCOMMIT",
        "pool_reset_on_return": None,
        "pool_size": AUTOCOMMIT_POOL_SIZE,
    }
    return create_engine(engine.url, **options)


# Connections the autocommit engine keeps per process (one per thread reading at the same moment).
AUTOCOMMIT_POOL_SIZE = 4


def dispose_engines(app, close: bool = True) -> None:
    """Let go of the app's database connections: its engines' and the autocommit engine's.

    `close=False` in a forked process: the parent's connections are forgotten, not closed.
    """
    sqlalchemy = app.extensions.get("sqlalchemy")  # this app's Flask-SQLAlchemy, whichever it is
    with app.app_context():
        for engine in sqlalchemy.engines.values() if sqlalchemy is not None else ():
            engine.dispose(close=close)
        made = app.extensions.get("autocommit_engine")
        if made is not None and made[1].pool is not made[0].pool:
            made[1].dispose(close=close)
