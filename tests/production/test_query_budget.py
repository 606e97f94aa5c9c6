"""Hot paths stay lean: statements counted with SQLAlchemy events."""

from __future__ import annotations

from flask import g

from chargeshed.charging import sessions as svc
from chargeshed.charging.supervisor import tick
from chargeshed.extensions import db
from chargeshed.ports.sim import LITHIUM, SimAdapter
from chargeshed.sites.models import Port
from chargeshed.worker import sim_round
from tests.statements import counted

# The pay page: one plain row (port, shed, site, tariff, the port's live session and, signed in, the
# wallet balance: chargeshed/charging/scan.py); signed in, the user (Flask-Login's) comes in that row.
PAY_PAGE_ANONYMOUS = 1
PAY_PAGE_SIGNED_IN = 1


def test_the_pay_page_runs_a_handful_of_queries(app, client, make_site, make_resident, login):
    make_site()
    client.get("/p/T11001")  # warm-up: first-use lookups (ledger accounts and the like) are not the budget
    outside_transactions: list[bool] = []
    with counted(outside_transactions) as anonymous:
        assert client.get("/p/T11001").status_code == 200
    assert len(anonymous) <= PAY_PAGE_ANONYMOUS, anonymous

    login(make_resident(balance_fen=1000))
    g.pop("_login_user", None)
    with counted(outside_transactions) as signed_in:
        page = client.get("/p/T11001")
    assert page.status_code == 200 and 'data-testid="start"' in page.get_data(as_text=True)
    assert len(signed_in) <= PAY_PAGE_SIGNED_IN, signed_in
    # Each statement is one round trip: neither page opens a transaction around its reads.
    assert outside_transactions and all(outside_transactions), outside_transactions


def _steady_tick_statements(make_site, make_resident, driver, clock, ports: int) -> int:
    make_site(sheds=(ports,))
    codes = [code for (code,) in db.session.execute(db.select(Port.code).order_by(Port.id))]
    user = make_resident(balance_fen=ports * 300)
    for code in codes:
        driver.plug(code, LITHIUM)
        svc.start_session(user.id, db.session.execute(db.select(Port).where(Port.code == code)).scalar_one())
    sim_round(driver, clock.now)  # starts go out, sessions confirmed
    clock.advance(minutes=1)
    sim_round(driver, clock.now)
    clock.advance(minutes=1)
    SimAdapter(driver).publish()  # the units push their readings; the tick reads them
    with counted() as statements:
        report = tick(clock.now)
    assert report.ports_read == ports and not report.ended
    return len(statements)


def _empty_database() -> None:
    """Every row gone, so a second measurement starts as the first did."""
    db.session.remove()
    for table in reversed(db.metadata.sorted_tables):
        db.session.execute(table.delete())
    db.session.commit()


def test_a_supervisor_tick_issues_the_same_statements_for_4_or_40_ports(app, make_site, make_resident, driver, clock):
    few = _steady_tick_statements(make_site, make_resident, driver, clock, 4)
    _empty_database()
    many = _steady_tick_statements(make_site, make_resident, driver, clock, 40)
    # Refused starts, (advisory lock), ports with telemetry, live sessions, open commands, two batched
    # writes, the alert refresh's two reads, sessions ended offline awaiting their device's meter:
    # a constant, whatever the number of ports.
    assert few == many <= 12


def _burst_statements(make_site, make_resident, driver, clock, endings: int) -> list[str]:
    """Statements of a tick in which `endings` sessions end together (bikes unplugged), across two
    sheds and three residents, one of whom is told by SMS."""
    from chargeshed.notify.consent import set_consent

    make_site(sheds=(endings // 2, endings - endings // 2))
    codes = [code for (code,) in db.session.execute(db.select(Port.code).order_by(Port.id))]
    users = [make_resident(balance_fen=endings * 300) for _ in range(3)]
    set_consent(users[0].id, "sms", "13900000001", clock.now)
    for i, code in enumerate(codes):
        driver.plug(code, LITHIUM)
        port = db.session.execute(db.select(Port).where(Port.code == code)).scalar_one()
        svc.start_session(users[i % len(users)].id, port)
    db.session.commit()
    sim_round(driver, clock.now)  # starts go out, sessions confirmed
    clock.advance(minutes=1)
    sim_round(driver, clock.now)
    clock.advance(minutes=1)
    for code in codes:
        driver.unplug(code)
    SimAdapter(driver).publish()
    with counted() as statements:
        report = tick(clock.now)
    assert report.ended == {svc.UNPLUGGED: endings} and not report.settle_errors
    return statements


# A burst settles together: the steady tick's statements, then one savepoint, the claim (returning
# the sessions), their costs, the ledger (accounts read, first use creating the two sheds' revenue
# accounts; the transactions, a locked balance update, the entries), the stop commands (superseding
# starts, inserting, one NOTIFY), the events, the notifications (places, consents, rows). The
# number of endings adds nothing (38 on PostgreSQL, 35 on SQLite).
BURST_TICK = 38


def test_a_burst_of_endings_settles_in_the_same_statements_for_4_or_20_sessions(
    app, make_site, make_resident, driver, clock
):
    few = _burst_statements(make_site, make_resident, driver, clock, 4)
    _empty_database()
    many = _burst_statements(make_site, make_resident, driver, clock, 20)
    assert len(few) == len(many) <= BURST_TICK, many
