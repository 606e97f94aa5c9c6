"""Fixtures: app per test on SQLite (and PostgreSQL when asked), a fake clock, factories."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

import pytest
from flask import has_app_context
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from chargeshed import create_app
from chargeshed.accounts.models import ROLE_RESIDENT
from chargeshed.charging.models import Tariff
from chargeshed.charging.tariff import default_tariff
from chargeshed.extensions import db as _db
from chargeshed.extensions import dispose_engines
from chargeshed.ports.sim import SimDriver

PG_URL = os.environ.get("CHARGESHED_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
START = datetime(2026, 11, 20, 10, 0, 0)


def pg_wanted() -> bool:
    """PostgreSQL tests run when CHARGESHED_TEST_PG is set or on CI."""
    return bool(os.environ.get("CHARGESHED_TEST_PG") or os.environ.get("CI"))


def must_not_skip() -> bool:
    """On CI a PostgreSQL or browser test that cannot run is a failure, not a skip."""
    return bool(os.environ.get("CI") or os.environ.get("CHARGESHED_REQUIRE_ALL"))


def skip_or_fail(reason: str) -> None:
    """Skip locally, fail on CI."""
    if must_not_skip():
        pytest.fail(reason)
    pytest.skip(reason)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Say loudly, at the end, when the PostgreSQL half of the suite did not run."""
    if pg_wanted():
        return
    terminalreporter.write_sep("!", "PostgreSQL half NOT run", red=True, bold=True)
    terminalreporter.write_line(
        "Only SQLite was tested: every PostgreSQL variant (marked pg) was left out. To run the whole\n"
        "suite: CHARGESHED_TEST_PG=1 CHARGESHED_PG_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test make test",
        red=True,
        bold=True,
    )


BACKENDS = ["sqlite"] + (["pg"] if pg_wanted() else [])


def _pg_ready() -> bool:
    try:
        with create_engine(PG_URL).connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = START):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> datetime:
        """Move forward by timedelta(**delta) and return the new time."""
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def driver(clock) -> SimDriver:
    """A simulated charging unit on the fake clock; bikes are plugged by the test."""
    return SimDriver(clock, seed=1, auto_plug=False)


@pytest.fixture(params=[pytest.param(b, marks=pytest.mark.pg) if b == "pg" else b for b in BACKENDS])
def db_url(request, tmp_path):
    """The database of one test: a fresh SQLite file, or the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite3'}"
    if not _pg_ready():
        skip_or_fail(f"PostgreSQL not reachable at {PG_URL}")
    return PG_URL


@pytest.fixture
def app(db_url, driver, tmp_path):
    """The app with a clean schema, the simulated driver and the demo payment provider."""
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": db_url,
            "SECRET_KEY": "test",
            "WTF_CSRF_ENABLED": False,
            "PAYMENTS": "demo",
            "PUBLIC_BASE_URL": "https://charge.example.cn",
            "RATELIMIT_ENABLED": False,
            "SERVER_NAME": None,
        }
    )
    app.extensions["port_driver"] = driver
    app.extensions["clock"] = driver.clock
    with app.app_context():
        _db.drop_all()
        _db.create_all()
        yield app
        _db.session.remove()
        if db_url.startswith("postgresql"):
            _db.drop_all()
        dispose_engines(app)


class IsolatedClient(FlaskClient):
    """Each request runs in its own app context, as in production: no `g` or DB session shared with
    the test body or with the previous request. What the test body wrote is committed first, as a
    finished request's work would be (services leave the commit to their caller; an open transaction
    would hold row locks the request then waits for)."""

    def open(self, *args, **kwargs):
        if has_app_context():
            _db.session.commit()
        with self.application.app_context():
            return super().open(*args, **kwargs)


@pytest.fixture
def client(app):
    app.test_client_class = IsolatedClient
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def make_site(app):
    """Create a site with one operator, the default tariff and sheds of N ports; returns the site."""
    from chargeshed.sites.models import Building, Operator, Port, Shed, Site

    counter = {"n": 0}

    def factory(name: str = "信中央皇庭小区", sheds: tuple[int, ...] = (4,), tariff=None):
        counter["n"] += 1
        n = counter["n"]
        site = Site(name=name if n == 1 else f"{name} {n}")
        operator = Operator(name=f"运营公司 {n}")
        tariff_row = Tariff(name="标准", rules=(tariff or default_tariff()).to_dict())
        _db.session.add_all([site, operator, tariff_row])
        _db.session.flush()
        _db.session.add_all(Building(site_id=site.id, number=b) for b in range(1, 13))
        for s, count in enumerate(sheds, start=1):
            shed = Shed(site_id=site.id, operator_id=operator.id, tariff_id=tariff_row.id, name=f"{s}号车棚")
            _db.session.add(shed)
            _db.session.flush()
            _db.session.add_all(
                Port(shed_id=shed.id, number=p, code=f"T{n}{s}{p:03d}", label=f"{s}号车棚 {p}号")
                for p in range(1, count + 1)
            )
        _db.session.commit()
        return site

    return factory


@pytest.fixture
def make_resident(app):
    """Create a resident (password 'secret-pass'), optionally with a wallet credited by a real top-up."""
    from chargeshed.accounts.services import create_user
    from chargeshed.payments import fulfilment
    from chargeshed.payments.providers import Payment

    counter = {"n": 0}

    def factory(balance_fen: int = 0, phone: str | None = None):
        counter["n"] += 1
        user = create_user(phone or f"1390000{counter['n']:04d}", "secret-pass", ROLE_RESIDENT)
        _db.session.commit()
        if balance_fen:
            topup = fulfilment.create_topup(user.id, balance_fen, [balance_fen], "cny", "demo")
            topup.checkout_ref = f"demo_{topup.id}"
            _db.session.commit()
            assert fulfilment.fulfil(topup.id, Payment(topup.checkout_ref, None, balance_fen, "cny")).credited
            _db.session.commit()
        return user

    return factory


@pytest.fixture
def login(client):
    """Sign a user in through the real login form."""

    def do(user, password: str = "secret-pass"):
        response = client.post("/login", data={"login": user.login, "password": password})
        assert response.status_code == 302, response.get_data(as_text=True)
        return user

    return do


@pytest.fixture
def tick(app, driver, clock):
    """Run one round at the fake clock's time: the simulated units get their commands and publish
    their readings into the telemetry store, then the supervisor ticks (chargeshed.worker.sim_round)."""
    from chargeshed.worker import sim_round

    def do():
        return sim_round(driver, clock.now)

    return do


class Compound:
    """One tenant: a site with its own operator, sheds, staff of every role, residents with bikes,
    a settled charge, a goodwill refund and a hazard case (see the `two_compounds` fixture)."""

    def __init__(self, **parts):
        self.__dict__.update(parts)


@pytest.fixture
def two_compounds(app, make_site, clock):
    """Compounds A and B, complete and separate, for tenant-isolation tests. Returns (a, b, admin).

    Each has: site, operator_id, sheds (two), ports, staff {role: user} (site manager, operator
    staff, patrol), residents (two, of the site, building 4, with bikes plated "<X>PLATE01/02"),
    session (an ended charge of the first resident), refund (a goodwill refund of it), case (an
    open hazard case in building 4 linked to the first bike). Passwords are 'secret-pass'.
    """
    from sqlalchemy import select as _select

    from chargeshed.accounts.models import (
        ROLE_ADMIN,
        ROLE_OPERATOR_STAFF,
        ROLE_PATROL,
        ROLE_SITE_MANAGER,
    )
    from chargeshed.accounts.services import add_bike, create_user
    from chargeshed.charging import sessions as charging
    from chargeshed.payments import fulfilment
    from chargeshed.payments.providers import Payment
    from chargeshed.payments.refunds import refund_session
    from chargeshed.safety import workflow
    from chargeshed.sites.models import Building, Port, Shed

    admin = create_user("platform-admin", "secret-pass", ROLE_ADMIN)
    _db.session.commit()

    def build(label: str) -> Compound:
        site = make_site(name=f"{label}小区", sheds=(2, 2))
        sheds = list(_select_all(_select(Shed).where(Shed.site_id == site.id).order_by(Shed.id)))
        ports = list(_select_all(_select(Port).where(Port.shed_id.in_([s.id for s in sheds])).order_by(Port.id)))
        operator_id = sheds[0].operator_id
        staff = {
            role: create_user(
                f"{label.lower()}-{role}",
                "secret-pass",
                role,
                site_id=site.id,
                operator_id=operator_id if role == ROLE_OPERATOR_STAFF else None,
                display_name=f"{label} {role}",
            )
            for role in (ROLE_SITE_MANAGER, ROLE_OPERATOR_STAFF, ROLE_PATROL)
        }
        _db.session.commit()
        residents = []
        for n in (1, 2):
            phone = f"13{'7' if label == 'A' else '8'}0000{n:04d}"
            resident = create_user(phone, "secret-pass", ROLE_RESIDENT, site_id=site.id, building=4, unit=n)
            add_bike(resident, f"{label}PLATE{n:02d}")
            _db.session.commit()
            topup = fulfilment.create_topup(resident.id, 2000, [2000], "cny", "demo")
            topup.checkout_ref = f"demo_{topup.id}"
            _db.session.commit()
            fulfilment.fulfil(topup.id, Payment(topup.checkout_ref, None, 2000, "cny"))
            residents.append(resident)
        session = charging.start_session(residents[0].id, ports[0], now=clock.now)
        charging.mark_charging(session, clock.now + timedelta(seconds=5))
        session.tier_watts = session.watts = 180
        session.energy_wh = 288
        _db.session.commit()
        assert charging.end_session(session, charging.FULL, clock.now + timedelta(minutes=120), stop_port=False)
        refund = refund_session(admin.id, session, min(10, session.cost_fen), "goodwill", now=clock.now)
        building4 = _db.session.execute(
            _select(Building).where(Building.site_id == site.id, Building.number == 4)
        ).scalar_one()
        case = workflow.file_report(
            workflow.NewReport("bike_indoors", building4.id, unit=1, floor=2, spot="lobby", plate=f"{label}PLATE01")
        )
        workflow.link_bike(case, f"{label}PLATE01", staff[ROLE_PATROL].id)
        return Compound(
            site=site,
            operator_id=operator_id,
            sheds=sheds,
            ports=ports,
            staff=staff,
            residents=residents,
            session=session,
            refund=refund,
            case=case,
            building=building4,
        )

    return build("A"), build("B"), admin


def _select_all(query):
    return _db.session.execute(query).scalars()
