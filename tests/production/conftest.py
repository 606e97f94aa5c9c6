"""Fixtures for production-path tests: a fresh PostgreSQL database per test, seeding, live processes."""

from __future__ import annotations

import contextlib
import secrets

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from chargeshed import create_app
from chargeshed.extensions import db
from tests.conftest import BACKENDS, PG_URL, _pg_ready, pg_wanted, skip_or_fail
from tests.production.live import FAST_HASH_METHOD

BACKENDS_HERE = [pytest.param(b, marks=pytest.mark.pg) if b == "pg" else b for b in BACKENDS]


def _admin_engine():
    return create_engine(make_url(PG_URL).set(database="postgres"), isolation_level="AUTOCOMMIT")


@pytest.fixture
def pg_url():
    """A brand-new PostgreSQL database for this test (so parallel runs never share tables); dropped after."""
    if not pg_wanted():
        pytest.skip("PostgreSQL tests run with CHARGESHED_TEST_PG=1 (or on CI)")
    if not _pg_ready():
        skip_or_fail(f"PostgreSQL not reachable at {PG_URL}")
    name = f"cs_prod_{secrets.token_hex(4)}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def backend_url(request, tmp_path):
    """A file SQLite database, or a fresh PostgreSQL one (shared by separate processes)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(params=BACKENDS_HERE)
def db_url(request, tmp_path):
    """Overrides tests/conftest.py's: on PostgreSQL each test here gets a database of its own."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite3'}"
    return request.getfixturevalue("pg_url")


@contextlib.contextmanager
def seeding(url: str, **config):
    """An app context on `url` with the schema created, for putting test data in place."""
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": url,
            "SECRET_KEY": "production-test-secret",
            "PAYMENTS": "demo",
            "RATELIMIT_ENABLED": False,
            **config,
        }
    )
    with app.app_context():
        db.create_all()
        try:
            yield app
        finally:
            db.session.remove()
            db.engine.dispose()


def seed_site(sheds: int = 1, ports: int = 4, prefix: str = "L") -> list[str]:
    """A site, an operator, the default tariff and `sheds` sheds of `ports` ports; returns the port codes."""
    from chargeshed.charging.models import Tariff
    from chargeshed.charging.tariff import default_tariff
    from chargeshed.sites.models import Operator, Port, Shed, Site

    site = Site(name="信中央皇庭小区")
    operator = Operator(name=f"运营公司 {prefix}")
    tariff = Tariff(name="标准", rules=default_tariff().to_dict())
    db.session.add_all([site, operator, tariff])
    db.session.flush()
    codes = []
    for s in range(1, sheds + 1):
        shed = Shed(site_id=site.id, operator_id=operator.id, tariff_id=tariff.id, name=f"{s}号车棚")
        db.session.add(shed)
        db.session.flush()
        for p in range(1, ports + 1):
            code = f"{prefix}{s:02d}{p:03d}"
            codes.append(code)
            db.session.add(Port(shed_id=shed.id, number=p, code=code, label=f"{s}号车棚 {p}号"))
    db.session.commit()
    return codes


def seed_resident(login: str, balance_fen: int = 0, password: str = "secret-pass"):
    """A resident whose wallet was credited through a real (demo) top-up."""
    from werkzeug.security import generate_password_hash

    from chargeshed.accounts.models import ROLE_RESIDENT, User
    from chargeshed.payments import fulfilment
    from chargeshed.payments.providers import Payment

    user = User(
        login=login,
        role=ROLE_RESIDENT,
        password_hash=generate_password_hash(password, method=FAST_HASH_METHOD),
    )
    db.session.add(user)
    db.session.commit()
    if balance_fen:
        topup = fulfilment.create_topup(user.id, balance_fen, [balance_fen], "cny", "demo")
        topup.checkout_ref = f"demo_{topup.id}"
        db.session.commit()
        assert fulfilment.fulfil(topup.id, Payment(topup.checkout_ref, None, balance_fen, "cny")).credited
        db.session.commit()
    return user
