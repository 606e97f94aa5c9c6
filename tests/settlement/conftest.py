"""Settlement fixtures: real charge histories at chosen local times, staff users, agreements."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from flask_babel import force_locale
from sqlalchemy import select

from chargeshed.charging import sessions as charging
from chargeshed.extensions import db
from chargeshed.settlement.agreements import PartyInput, create_agreement
from chargeshed.sites.models import Port, Shed


def local(year: int, month: int, day: int, hour: int = 12, minute: int = 0) -> datetime:
    """A local (Asia/Shanghai, +8) wall-clock time as the naive UTC the database stores."""
    return datetime(year, month, day, hour, minute) - timedelta(hours=8)


THREE_PARTIES = [
    PartyInput("株洲安充新能源科技有限公司", "operator", 6000, pays_electricity=True),
    PartyInput("物业服务公司", "property", 3000),
    PartyInput("业主委员会", "owners_committee", 1000),
]


@pytest.fixture(autouse=True)
def english(app):
    """Messages and documents in English, so tests can read them (pages: the client's `lang` cookie)."""
    with force_locale("en"):
        yield


@pytest.fixture
def at(clock):
    """Move the app's clock to a local wall-clock time (ledger bookings take the clock's time)."""

    def move(year: int, month: int, day: int, hour: int = 12, minute: int = 0) -> datetime:
        clock.now = local(year, month, day, hour, minute)
        return clock.now

    return move


@pytest.fixture
def charge(app, clock):
    """Run a real session: start, confirm, end at `minutes` later; the ledger books it at its end."""

    def run(
        user,
        port: Port,
        start: datetime,
        minutes: int = 120,
        watts: int = 180,
        energy_wh: int | None = None,
        reason: str = charging.FULL,
    ):
        clock.now = start
        session = charging.start_session(user.id, port, now=start)
        charging.mark_charging(session, start + timedelta(seconds=5))
        db.session.commit()
        session.tier_watts = session.watts = watts
        session.energy_wh = int(watts * minutes / 60 * 0.8) if energy_wh is None else energy_wh
        end = start + timedelta(minutes=minutes, seconds=5)
        clock.now = end
        assert charging.end_session(session, reason, end, stop_port=False)
        return session

    return run


@pytest.fixture
def ports(app):
    """The ports of a site's sheds: {shed number (1-based): [ports]}."""

    def of(site) -> dict[int, list[Port]]:
        sheds = db.session.execute(select(Shed).where(Shed.site_id == site.id).order_by(Shed.id)).scalars()
        return {n: list(shed.ports) for n, shed in enumerate(sheds, start=1)}

    return of


@pytest.fixture
def make_staff(app):
    """A staff user (password 'secret-pass') of a role, tied to a site or operator."""
    from chargeshed.accounts.services import create_user

    counter = {"n": 0}

    def factory(role: str, site_id: int | None = None, operator_id: int | None = None):
        counter["n"] += 1
        user = create_user(f"staff{counter['n']}", "secret-pass", role, site_id=site_id, operator_id=operator_id)
        db.session.commit()
        return user

    return factory


@pytest.fixture
def agree(app):
    """An agreement for the operator of a site's sheds; three parties 60/30/10 unless told otherwise."""

    def make(
        site,
        valid_from: date = date(2026, 1, 1),
        *,
        parties=None,
        shed_id=None,
        valid_to=None,
        price: int = 0,
        fee_mode: str = "shared",
    ):
        operator_id = site.sheds[0].operator_id
        agreement = create_agreement(
            operator_id=operator_id,
            site_id=site.id,
            shed_id=shed_id,
            valid_from=valid_from,
            valid_to=valid_to,
            electricity_fen_per_kwh=price,
            fee_mode=fee_mode,
            parties=THREE_PARTIES if parties is None else parties,
        )
        db.session.commit()
        return agreement

    return make


@pytest.fixture
def top_up(app):
    """A real top-up credited at the clock's time, with the provider's fee booked (0: no fee)."""
    from chargeshed.payments import fees, fulfilment
    from chargeshed.payments.providers import Fee, Payment

    def run(user, amount_fen: int, fee_fen: int = 0):
        topup = fulfilment.create_topup(user.id, amount_fen, [amount_fen], "cny", "demo")
        topup.checkout_ref = f"demo_{topup.id}"
        db.session.commit()
        assert fulfilment.fulfil(topup.id, Payment(topup.checkout_ref, None, amount_fen, "cny")).credited
        if fee_fen:
            assert fees.book_fee(topup, Fee(fee_fen, amount_fen - fee_fen, "cny")) == "recorded"
        db.session.commit()
        return topup

    return run


@pytest.fixture
def refund(app, clock):
    """A staff goodwill refund of a session, booked at the clock's time (the payments service)."""
    from chargeshed.accounts.models import ROLE_ADMIN
    from chargeshed.accounts.services import create_user
    from chargeshed.payments.refunds import refund_session

    staff = {}

    def run(session, amount_fen: int, reason: str = "port gave no power"):
        if "user" not in staff:
            staff["user"] = create_user("refunder", "secret-pass", ROLE_ADMIN)
            db.session.commit()
        return refund_session(staff["user"].id, session, amount_fen, reason, now=clock.now)

    return run
