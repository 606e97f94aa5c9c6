"""Units of work: services never end the caller's transaction, races are settled by locks and
constraints, the ledger tells its errors apart by constraint name, and a session's money and energy
are dated by the same instant."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from chargeshed.charging import sessions
from chargeshed.extensions import db
from chargeshed.money import ledger
from chargeshed.money.ledger import check_ledger, wallet_balance
from chargeshed.sites.models import Port


def port(code: str = "T11001") -> Port:
    return db.session.execute(select(Port).where(Port.code == code)).scalar_one()


def test_a_double_tap_after_a_top_up_links_the_top_up_to_the_live_session(app, make_site, make_resident):
    from chargeshed.payments import fulfilment

    make_site()
    user = make_resident(balance_fen=1000)
    live = sessions.start_session(user.id, port())
    db.session.commit()
    topup = fulfilment.create_topup(user.id, 1000, [1000], "cny", "demo", start_port=port())
    again = sessions.start_session(user.id, port(), topup=topup)
    db.session.commit()
    assert again.id == live.id and db.session.get(type(topup), topup.id).started_session_id == live.id


def test_ledger_errors_are_told_apart_by_the_violated_constraint(app, make_resident, monkeypatch):
    user = make_resident(balance_fen=500)
    wallet, holds = ledger.wallet_account(user.id), ledger.holds_account()
    with pytest.raises(ledger.InsufficientFunds):
        ledger.post("hold:x", "hold", [ledger.Leg(wallet, -600), ledger.Leg(holds, 600)])
    ledger.post("hold:y", "hold", [ledger.Leg(wallet, -100), ledger.Leg(holds, 100)])
    db.session.commit()
    # A duplicate that gets past the early lookup is caught by the unique constraint, by its name.
    monkeypatch.setattr(ledger, "find_txn", lambda ref: None)
    with pytest.raises(ledger.AlreadyBooked):
        ledger.post("hold:y", "hold", [ledger.Leg(wallet, -100), ledger.Leg(holds, 100)])
    # Any other violation on the ledger's tables is neither: it is raised as it is.
    with pytest.raises(IntegrityError):
        ledger.post("odd:1", None, [ledger.Leg(wallet, -1), ledger.Leg(holds, 1)])
    db.session.rollback()
    assert wallet_balance(user.id) == 400 and check_ledger() == []


def test_a_session_ending_just_before_midnight_stays_whole_in_one_statement(app, make_site, make_resident, clock):
    from chargeshed.settlement.figures import compute_figures
    from chargeshed.settlement.periods import parse_period

    site = make_site()
    user = make_resident(balance_fen=1000)
    # 31 October, 23:59:59.5 local time (UTC+8), as the naive UTC the database keeps.
    end = datetime(2026, 10, 31, 23, 59, 59, 500000) - timedelta(hours=8)
    begin = end - timedelta(hours=2)
    clock.now = begin
    session = sessions.start_session(user.id, port(), now=begin)
    sessions.mark_charging(session, begin)
    db.session.commit()
    session.energy_wh, session.watts, session.tier_watts = 400, 200, 200
    clock.now = end + timedelta(seconds=1)  # the tick settles it a moment later, after midnight
    assert sessions.end_session(session, sessions.FULL, end, stop_port=False)
    db.session.refresh(session)
    operator_id = port().shed.operator_id
    october = compute_figures(operator_id, site.id, parse_period("2026-10"), now=datetime(2026, 12, 1))
    november = compute_figures(operator_id, site.id, parse_period("2026-11"), now=datetime(2026, 12, 1))
    assert (october["totals"]["sessions"], october["totals"]["energy_wh"]) == (1, 400)
    assert october["totals"]["gross_fen"] == session.cost_fen > 0
    assert (november["totals"]["sessions"], november["totals"]["gross_fen"]) == (0, 0)
    assert ledger.find_txn(f"settle:{session.id}").booked_at == end
    assert check_ledger() == []


@pytest.mark.parametrize("service", ["end_session", "fail_session", "staff_stop"])
def test_ending_a_charge_leaves_the_callers_transaction_to_the_caller(app, make_site, make_resident, clock, service):
    from chargeshed.charging import port_admin
    from chargeshed.charging.models import ChargeSession

    make_site()
    user = make_resident(balance_fen=1000)
    session = sessions.start_session(user.id, port())
    if service == "end_session":
        sessions.mark_charging(session, clock.now)
    db.session.commit()
    port().label = "changed by the caller"  # the caller's other, unfinished work
    if service == "staff_stop":
        assert port_admin.staff_stop(port(), "manager", "wiring check", clock.now)
    else:
        assert getattr(sessions, service)(session, sessions.USER_STOP, clock.now)
    db.session.rollback()  # the caller changes its mind: nothing of either may be kept
    assert port().label != "changed by the caller"
    assert db.session.get(ChargeSession, session.id).state in sessions.LIVE_STATES
    assert wallet_balance(user.id) == 1000 - session.hold_fen and check_ledger() == []


def test_port_administration_leaves_the_callers_transaction_to_the_caller(app, make_site, clock):
    from chargeshed.charging import port_admin
    from chargeshed.sites.models import PORT_ACTIVE

    make_site()
    port_admin.rename_port(port(), "新标签", "manager", clock.now)
    assert port_admin.set_maintenance(port("T11002"), True, "manager", clock.now)
    assert port_admin.retire_port(port("T11003"), "manager", clock.now)
    db.session.rollback()
    assert port().label != "新标签"
    assert {port(code).status for code in ("T11002", "T11003")} == {PORT_ACTIVE}


def test_the_occupancy_refresh_is_committed_by_the_tick_not_by_itself(app, make_site, clock):
    from chargeshed.charging import occupancy
    from chargeshed.sites.models import OccupancyVersion

    make_site()
    db.session.commit()
    assert occupancy.refresh_versions(clock.now) == 1
    db.session.rollback()
    assert db.session.execute(select(OccupancyVersion)).first() is None
