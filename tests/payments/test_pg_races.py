"""Races PostgreSQL settles with row locks and constraints: a lost start race leaves the caller's
other writes intact; maintenance racing a start never leaves a live session on a port in maintenance."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from chargeshed.accounts.models import Bike
from chargeshed.charging import port_admin as admin
from chargeshed.charging import sessions
from chargeshed.charging.models import LIVE_STATES, ChargeSession
from chargeshed.extensions import db
from chargeshed.money.ledger import check_ledger, wallet_balance
from chargeshed.sites.models import PORT_ACTIVE, Port

pytestmark = pytest.mark.pg


@pytest.fixture
def db_url():
    """These races need row locks and concurrent commits: PostgreSQL only."""
    from tests.conftest import PG_URL, _pg_ready, pg_wanted, skip_or_fail

    if not pg_wanted():
        pytest.skip("PostgreSQL tests run with CHARGESHED_TEST_PG=1 (or on CI)")
    if not _pg_ready():
        skip_or_fail(f"PostgreSQL not reachable at {PG_URL}")
    return PG_URL


def port(code: str = "T11001") -> Port:
    return db.session.execute(select(Port).where(Port.code == code)).scalar_one()


def test_a_lost_start_race_leaves_the_callers_other_writes_intact(app, make_site, make_resident, monkeypatch):
    make_site()
    winner, loser = make_resident(balance_fen=1000), make_resident(balance_fen=1000)
    target = port()
    ids = {"port": target.id, "shed": target.shed_id, "rules": target.shed.tariff.terms.to_dict()}
    db.session.commit()
    checked = sessions.refusal_for_port

    def and_meanwhile_someone_else_starts(*args, **kwargs):
        refusal = checked(*args, **kwargs)
        with Session(db.engine) as other:  # another request commits its start between check and insert
            other.add(
                ChargeSession(
                    user_id=winner.id, port_id=ids["port"], shed_id=ids["shed"], rules=ids["rules"], hold_fen=300
                )
            )
            other.commit()
        return refusal

    monkeypatch.setattr(sessions, "refusal_for_port", and_meanwhile_someone_else_starts)
    db.session.add(Bike(owner_id=loser.id, plate="湘B12345"))  # the caller's own work, same transaction
    db.session.flush()
    with pytest.raises(sessions.StartRefused) as refused:
        sessions.start_session(loser.id, target)
    assert refused.value.code == "port_busy"
    db.session.commit()
    assert db.session.execute(select(Bike).where(Bike.plate == "湘B12345")).scalar_one().owner_id == loser.id
    assert wallet_balance(loser.id) == 1000


def test_maintenance_racing_a_start_never_leaves_a_live_session_on_a_port_in_maintenance(
    app, make_site, make_resident, clock
):
    make_site()
    user = make_resident(balance_fen=1000)
    port_id = port().id
    started = sessions.start_session(user.id, port())  # not committed yet: the start is in flight
    outcome: dict = {}

    def staff_sets_maintenance() -> None:
        with app.app_context():
            try:
                outcome["changed"] = admin.set_maintenance(db.session.get(Port, port_id), True, "staff", clock.now)
                db.session.commit()  # the request's boundary
            except admin.Refused as refused:
                outcome["refused"] = refused.code

    staff = threading.Thread(target=staff_sets_maintenance)
    staff.start()
    staff.join(timeout=0.5)  # it waits for the start's lock on the port (or has not begun yet)
    db.session.commit()
    staff.join(timeout=30)
    assert outcome == {"refused": "busy"}
    db.session.expire_all()
    assert db.session.get(Port, port_id).status == PORT_ACTIVE
    assert db.session.get(ChargeSession, started.id).state in LIVE_STATES
    assert check_ledger() == []
