"""Supervisor rules on the fake clock: what ends a charge, when, and what it costs."""

from sqlalchemy import select

from chargeshed.charging import sessions as svc
from chargeshed.charging.models import ChargeSession, SessionEvent
from chargeshed.charging.tariff import Tariff, Tier
from chargeshed.extensions import db
from chargeshed.money import ledger
from chargeshed.ports.models import PortCommand, PortEvent
from chargeshed.ports.sim import LITHIUM, OVERLOAD, STUCK_RELAY, UNPLUGGED, Bike
from chargeshed.sites.models import Port
from chargeshed.worker import sim_round as run_tick

CODE = "T11001"


def _port(code: str = CODE) -> Port:
    return db.session.execute(select(Port).where(Port.code == code)).scalar_one()


def _start(user, code: str = CODE) -> ChargeSession:
    return svc.start_session(user.id, _port(code))


def _run(tick, clock, minutes: int, session: ChargeSession, step: int = 1) -> int | None:
    """Tick every `step` minutes for up to `minutes`; the minute the session ended, else None."""
    for minute in range(0, minutes + 1, step):
        if minute:
            clock.advance(minutes=step)
        tick()
        db.session.refresh(session)
        if not session.is_live:
            return minute
    return None


def test_full_after_ten_minutes_under_the_threshold(app, make_site, make_resident, driver, clock, tick):
    make_site()
    user = make_resident(balance_fen=1000)
    # 180 W for 30 min, then a taper: under 10 W (rounded) from minute 60 on.
    driver.plug(CODE, bike=Bike(LITHIUM, cc_watts=180, cc_minutes=30, taper_minutes=10))
    session = _start(user)
    ended = _run(tick, clock, 120, session)
    assert session.end_reason == svc.FULL
    assert ended == 70  # first reading under 10 W at minute 60, then 10 minutes
    assert session.cost_fen == 50  # 2 started hours at the ≤200 W price
    assert ledger.wallet_balance(user.id) == 1000 - 50
    assert driver.read(CODE).relay_on is False  # switched off in the same tick


def test_overload_cuts_off_at_once_and_costs_nothing(app, make_site, make_resident, driver, clock, tick):
    make_site()
    user = make_resident(balance_fen=1000)
    driver.plug(CODE, OVERLOAD)
    session = _start(user)
    tick()
    db.session.refresh(session)
    assert (session.state, session.end_reason, session.cost_fen) == ("ended", svc.OVERLOAD, 0)
    assert driver.read(CODE).relay_on is False
    assert ledger.wallet_balance(user.id) == 1000


def test_unplugged_right_after_start(app, make_site, make_resident, driver, clock, tick):
    make_site()
    user = make_resident(balance_fen=1000)
    driver.plug(CODE, UNPLUGGED)
    session = _start(user)
    ended = _run(tick, clock, 5, session)
    assert session.end_reason == svc.UNPLUGGED and ended == 1  # after the 60 s grace
    assert session.cost_fen == 0 and ledger.wallet_balance(user.id) == 1000


def test_time_up_at_the_maximum_duration(app, make_site, make_resident, driver, clock, tick):
    short = Tariff(tiers=(Tier(200, 25), Tier(800, 100)), max_minutes=120, hold_fen=300)
    make_site(tariff=short)
    user = make_resident(balance_fen=1000)
    driver.plug(CODE, bike=Bike(LITHIUM, cc_watts=150, cc_minutes=1000))
    session = _start(user)
    ended = _run(tick, clock, 180, session, step=5)
    assert (session.end_reason, ended, session.cost_fen) == (svc.TIME_UP, 120, 50)


def test_hold_exhausted_when_the_prepaid_time_is_used(app, make_site, make_resident, driver, clock, tick):
    make_site()
    user = make_resident(balance_fen=1000)
    driver.plug(CODE, bike=Bike(LITHIUM, cc_watts=350, cc_minutes=1000))  # ¥0.50 an hour: 6 h for ¥3
    session = _start(user)
    ended = _run(tick, clock, 8 * 60, session, step=5)
    assert (session.end_reason, ended, session.cost_fen) == (svc.HOLD_EXHAUSTED, 6 * 60, 300)
    assert ledger.wallet_balance(user.id) == 700


def test_start_unconfirmed_in_60_s_fails_and_releases_the_hold(app, make_site, make_resident, driver, clock, tick):
    make_site()
    user = make_resident(balance_fen=1000)
    driver.plug(CODE, LITHIUM)
    driver.set_offline(CODE)  # the unit does not answer
    session = _start(user)
    assert ledger.wallet_balance(user.id) == 700
    tick()
    clock.advance(seconds=59)
    tick()
    db.session.refresh(session)
    assert session.state == "pending"
    clock.advance(seconds=1)
    tick()
    db.session.refresh(session)
    assert (session.state, session.end_reason, session.cost_fen) == ("failed", svc.START_FAILED, 0)
    assert ledger.wallet_balance(user.id) == 1000 and ledger.holds_account().balance_fen == 0
    # When the unit answers again its late start is never executed; the safety stop is.
    driver.set_offline(CODE, False)
    clock.advance(seconds=5)
    tick()
    assert driver.read(CODE).relay_on is False
    statuses = db.session.execute(select(PortCommand.kind, PortCommand.status).order_by(PortCommand.id)).all()
    assert statuses == [("start", "done"), ("stop", "done")]


def test_a_start_the_port_rejects_fails_at_once(app, make_site, make_resident, driver, clock, tick):
    make_site()
    user = make_resident(balance_fen=1000)
    driver.set_fault(CODE, "ground_fault")
    port = _port()
    port.ocpp_state = "Available"  # the supervisor has not seen the fault yet
    db.session.commit()
    session = _start(user)
    report = tick()
    db.session.refresh(session)
    assert report.failed == 1 and session.state == "failed" and ledger.wallet_balance(user.id) == 1000


def test_offline_after_the_debounce(app, make_site, make_resident, driver, clock, tick):
    make_site()
    user = make_resident(balance_fen=1000)
    driver.plug(CODE, bike=Bike(LITHIUM, cc_watts=200, cc_minutes=1000))
    session = _start(user)
    tick()
    driver.set_offline(CODE)
    for _ in range(3):
        clock.advance(minutes=1)
        tick()
        db.session.refresh(session)
        assert session.state == "charging"
    clock.advance(minutes=1)
    tick()
    db.session.refresh(session)
    assert session.end_reason == svc.OFFLINE
    kinds = db.session.execute(select(PortEvent.kind).where(PortEvent.port_id == session.port_id)).scalars()
    assert kinds.all() == ["offline"]
    assert _port().ocpp_state == "Offline"


def test_a_stuck_relay_is_recorded_as_a_fault(app, make_site, make_resident, driver, clock, tick):
    make_site()
    user = make_resident(balance_fen=1000)
    driver.plug(CODE, STUCK_RELAY)
    session = _start(user)
    tick()
    clock.advance(minutes=30)
    tick()
    svc.end_session(session, svc.USER_STOP)
    tick()
    assert driver.read(CODE).relay_on is True  # it ignored the stop
    port = _port()
    assert port.fault == "stuck_relay"
    events = db.session.execute(select(PortEvent.kind, PortEvent.detail)).all()
    assert events == [("fault", "stuck_relay")]
    assert svc.refusal_for_port(port, clock.now) == "port_fault"


def test_a_relay_whose_stop_is_still_queued_is_not_taken_for_stuck(app, make_site, make_resident, driver, clock):
    """A resident stops between the unit's reading and the supervisor's tick: not a fault."""
    from chargeshed.charging import supervisor

    make_site()
    user = make_resident(balance_fen=1000)
    driver.plug(CODE, LITHIUM)
    session = _start(user)
    run_tick(driver, clock.now)
    clock.advance(minutes=10)
    original = supervisor.tick

    def resident_stops_then_tick(*args, **kwargs):
        # The unit has just published "relay on"; the resident stops before the supervisor looks.
        if session.is_live:
            svc.end_session(session, svc.USER_STOP, clock.now)
        return original(*args, **kwargs)

    supervisor.tick = resident_stops_then_tick
    try:
        run_tick(driver, clock.now)
    finally:
        supervisor.tick = original
    assert _port().fault is None
    run_tick(driver, clock.now)
    assert _port().fault is None and driver.read(CODE).relay_on is False


def test_the_tier_comes_from_the_highest_five_minute_average(app, make_site, make_resident, driver, clock, tick):
    make_site()
    user = make_resident(balance_fen=1000)
    # 350 W for 10 minutes, then a fast taper: full after ~38 minutes. The average over the whole
    # charge is under 200 W, but the highest 5-minute average is 350 W: the 400 W tier applies.
    driver.plug(CODE, bike=Bike(LITHIUM, cc_watts=350, cc_minutes=10, taper_minutes=5))
    session = _start(user)
    _run(tick, clock, 60, session)
    assert session.end_reason == svc.FULL
    assert 326 <= session.tier_watts <= 350  # whole-Wh readings: the lower bound, within 24 W over 5 minutes
    assert session.energy_wh * 60 / ((session.ended_at - session.confirmed_at).total_seconds() / 60) < 200
    assert session.cost_fen == 50  # one started hour at ¥0.50, not ¥0.25


def _snapshot() -> dict:
    """Every row of every table, for comparing database states."""
    db.session.expire_all()
    state = {}
    for table in db.metadata.sorted_tables:
        rows = db.session.execute(select(table).order_by(*table.primary_key.columns)).all()
        state[table.name] = [tuple(row) for row in rows]
    return state


def test_tick_is_idempotent_at_the_same_now(app, make_site, make_resident, driver, clock):
    """Through starts, confirmations, ends, faults and offline periods: a second tick changes nothing."""
    make_site(sheds=(6,))
    residents = [make_resident(balance_fen=2000) for _ in range(5)]
    driver.plug("T11001", bike=Bike(LITHIUM, cc_watts=200, cc_minutes=20, taper_minutes=5))
    driver.plug("T11002", OVERLOAD)
    driver.plug("T11003", UNPLUGGED)
    driver.plug("T11004", STUCK_RELAY)
    driver.plug("T11005", bike=Bike(LITHIUM, cc_watts=250, cc_minutes=1000))
    for user, code in zip(residents, ["T11001", "T11002", "T11003", "T11004", "T11005"], strict=True):
        svc.start_session(user.id, _port(code))
    for minute in range(0, 60, 3):
        if minute == 9:
            driver.set_offline("T11005")
        if minute == 12:
            svc.end_session(db.session.get(ChargeSession, 4), svc.USER_STOP, clock.now)
        if minute == 30:
            driver.set_offline("T11005", False)
        run_tick(driver, clock.now)
        first = _snapshot()
        report = run_tick(driver, clock.now)
        assert _snapshot() == first, f"second tick at minute {minute} changed the database"
        assert not (report.confirmed or report.ended or report.failed or report.commands)
        clock.advance(minutes=3)
    reasons = dict(db.session.execute(select(ChargeSession.id, ChargeSession.end_reason)).all())
    assert reasons == {1: svc.FULL, 2: svc.OVERLOAD, 3: svc.UNPLUGGED, 4: svc.USER_STOP, 5: svc.OFFLINE}
    assert db.session.execute(select(SessionEvent.kind).where(SessionEvent.session_id == 1)).scalars().all() == [
        "requested",
        "charging",
        "ended",
    ]
    assert ledger.check_ledger() == [] and svc.holds_problems() == []


def test_a_failing_settlement_in_a_batched_tick_never_takes_the_others_with_it(
    app, make_site, make_resident, driver, clock, monkeypatch
):
    """The endings of a tick settle together; when one cannot be booked, the others' postings and
    stop commands are kept, and the failing one is left live for the next tick."""
    from chargeshed.charging import supervisor
    from chargeshed.ports.sim import SimAdapter

    make_site(sheds=(5,))
    codes = [f"T11{n:03d}" for n in range(1, 6)]
    users = [make_resident(balance_fen=1000) for _ in codes]
    for user, code in zip(users, codes, strict=True):
        driver.plug(code, LITHIUM)
        _start(user, code)
    db.session.commit()
    run_tick(driver, clock.now)  # starts go out, sessions confirmed
    clock.advance(minutes=30)
    run_tick(driver, clock.now)
    # The third session's books are broken: its hold is more than the holds account has.
    victim = _port(codes[2]).id
    victim = db.session.execute(select(ChargeSession.id).where(ChargeSession.port_id == victim)).scalar_one()
    db.session.execute(db.update(ChargeSession).where(ChargeSession.id == victim).values(hold_fen=10**9))
    db.session.commit()
    batches = []
    settle = svc.settle
    monkeypatch.setattr(svc, "settle", lambda endings: batches.append(len(endings)) or settle(endings))
    for code in codes:
        driver.unplug(code)
    clock.advance(minutes=1)
    SimAdapter(driver).publish()

    report = supervisor.tick(clock.now)

    assert batches == [5, 1, 1, 1, 1, 1]  # all together first, then each alone
    assert report.ended == {svc.UNPLUGGED: 4} and report.settle_errors == 1
    db.session.expire_all()
    sessions = db.session.execute(select(ChargeSession).order_by(ChargeSession.id)).scalars().all()
    assert [s.state for s in sessions] == ["ended", "ended", "charging", "ended", "ended"]
    others = [s.id for s in sessions if s.id != victim]
    refs = set(db.session.execute(select(ledger.LedgerTxn.ref)).scalars())
    assert {f"settle:{i}" for i in others} <= refs and f"settle:{victim}" not in refs
    stops = db.session.execute(select(PortCommand.session_id).where(PortCommand.kind == "stop")).scalars().all()
    assert sorted(stops) == others
    assert all(ledger.wallet_balance(s.user_id) == 1000 - s.cost_fen > 0 for s in sessions if s.id != victim)
    assert ledger.check_ledger() == []
