"""What the port and charge pages tell a resident: occupied ports, money paid while a port got taken,
the tier from the first reading, durations in words, 充满待取车 and every stop reason."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from chargeshed.charging import sessions as charging
from chargeshed.charging.models import ChargeSession
from chargeshed.extensions import db
from chargeshed.money.ledger import check_ledger, wallet_balance
from chargeshed.ports.driver import FINISHING
from chargeshed.ports.models import PortEvent
from chargeshed.ports.sim import Bike
from chargeshed.sites.models import Port


def _port(code: str) -> Port:
    return db.session.execute(select(Port).where(Port.code == code)).scalar_one()


def _live(client, session_id: int) -> str:
    return client.get(f"/s/{session_id}/live", headers={"HX-Request": "true"}).get_data(as_text=True)


def test_a_port_with_a_bike_left_plugged_in_starts_only_after_the_resident_confirms(
    app, client, make_site, make_resident, login
):
    make_site()
    port = _port("T11001")
    port.ocpp_state = FINISHING  # the last charge ended, the bike is still plugged in
    db.session.commit()
    user = login(make_resident(balance_fen=1000))

    page = client.get("/p/T11001").get_data(as_text=True)
    assert 'data-state="occupied"' in page and 'data-testid="occupied-warning"' in page
    assert "您的钱包" in page and 'name="plug_confirmed"' in page

    refused = client.post("/p/T11001/start")
    assert refused.status_code == 302 and refused.headers["Location"].endswith("/p/T11001")
    assert db.session.query(ChargeSession).count() == 0 and wallet_balance(user.id) == 1000
    assert "请先拔下原来的插头" in client.get("/p/T11001").get_data(as_text=True)

    started = client.post("/p/T11001/start", data={"plug_confirmed": "yes"})
    assert re.search(r"/s/\d+$", started.headers["Location"])
    event = db.session.execute(select(PortEvent).where(PortEvent.kind == "plug_confirmed")).scalar_one()
    assert event.port_id == port.id and f"user {user.id}" in event.detail


def test_a_top_up_whose_port_was_taken_meanwhile_says_the_money_is_in_the_wallet_and_where_to_go(
    app, client, make_site, make_resident, login
):
    make_site()
    other = make_resident(balance_fen=1000)
    me = login(make_resident())
    pay = client.post("/p/T11001/topup", data={"amount": "1000"})
    charging.start_session(other.id, _port("T11001"))  # a neighbour starts while I pay
    db.session.commit()

    paid = client.post(pay.headers["Location"])
    assert re.search(r"/topup/\d+/not-started$", paid.headers["Location"])
    page = client.get(paid.headers["Location"]).get_data(as_text=True)
    assert "¥10.00 已存入钱包" in page
    assert 'data-testid="wallet-balance">¥10.00<' in page
    assert "/p/T11002" in page and "1号车棚 · 2号插座" in page  # the nearest free port, one tap away
    assert '/p/T11001"' not in page
    assert wallet_balance(me.id) == 1000 and check_ledger() == []


def test_the_tier_and_its_reason_show_from_the_first_reading_and_durations_are_words(
    app, client, make_site, make_resident, login, driver, clock, tick
):
    make_site()
    login(make_resident(balance_fen=1000))
    driver.plug("T11001", bike=Bike("lithium", cc_watts=219, cc_minutes=600, taper_minutes=30))
    session_url = client.post("/p/T11001/start").headers["Location"]
    session_id = int(session_url.rsplit("/", 1)[1])
    tick()
    for _minute in range(2):  # the first readings: no 5-minute average exists yet
        clock.advance(minutes=1)
        tick()

    first = _live(client, session_id)
    assert "计费档位：200–400 W，每 60 分钟 ¥0.50" in first
    assert "按充电器当前功率（219 W）确定" in first
    assert "最多可充 6 小时" in first and 'data-fen="50"' in first
    assert not re.search(r"\d+:\d\d:\d\d", first)  # no clock-like durations

    for _minute in range(4):  # the worker reads every few seconds; once a minute is enough here
        clock.advance(minutes=1)
        tick()
    later = _live(client, session_id)
    assert "计费档位：200–400 W，每 60 分钟 ¥0.50" in later and 'data-fen="50"' in later
    assert "最高 5 分钟平均功率计算，本次为 2" in later
    assert '已充时长</dt><dd data-testid="elapsed">6 分钟' in later
    assert "预付款已用：¥0.50 / ¥3.00" in later  # the bar says what it measures


def test_a_stopped_charge_is_not_shown_as_full_and_the_stop_needs_a_confirmation(
    app, client, make_site, make_resident, login, driver, clock, tick
):
    make_site()
    login(make_resident(balance_fen=1000))
    driver.plug("T11001", bike=Bike("lithium", cc_watts=250, cc_minutes=600, taper_minutes=30))
    session_url = client.post("/p/T11001/start").headers["Location"]
    tick()
    clock.advance(seconds=9)
    tick()

    confirm = client.get(session_url + "/stop").get_data(as_text=True)
    assert "确定停止充电吗？" in confirm and "继续充电" in confirm
    session = db.session.execute(select(ChargeSession)).scalar_one()
    assert session.state == "charging"  # asking changed nothing

    client.post(session_url + "/stop")
    page = client.get(session_url).get_data(as_text=True)
    assert 'data-reason="user_stop"' in page and "<progress" not in page
    assert "充满待取车" not in page and "即将充满" not in page


def test_full_is_announced_while_it_is_being_judged_and_then_the_bike_waits_for_pickup(
    app, client, make_site, make_resident, login, driver, clock, tick
):
    make_site()
    login(make_resident(balance_fen=1000))
    driver.plug("T11001", bike=Bike("lithium", cc_watts=250, cc_minutes=20, taper_minutes=5))
    session_url = client.post("/p/T11001/start").headers["Location"]
    session_id = int(session_url.rsplit("/", 1)[1])
    tick()
    clock.advance(minutes=40)  # the taper has fallen under 10 W
    tick()
    judging = _live(client, session_id)
    assert "即将充满" in judging and "再保持 10 分钟" in judging

    clock.advance(minutes=10)
    tick()
    done = _live(client, session_id)
    assert 'data-reason="full"' in done and "充满待取车" in done


def test_a_staff_stop_shows_its_reason_to_the_resident(
    app, client, make_site, make_resident, login, driver, clock, tick
):
    from chargeshed.charging import port_admin as admin

    make_site()
    login(make_resident(balance_fen=1000))
    driver.plug("T11001", bike=Bike("lithium", cc_watts=250, cc_minutes=600, taper_minutes=30))
    session_url = client.post("/p/T11001/start").headers["Location"]
    tick()
    clock.advance(minutes=3)
    admin.staff_stop(_port("T11001"), "manager", "车棚线路检修", clock.now)

    page = client.get(session_url).get_data(as_text=True)
    assert 'data-reason="staff_stop"' in page and "工作人员说明：车棚线路检修" in page
    assert "manager" not in page


def test_in_the_demo_a_whole_charge_ends_full_by_itself_within_three_minutes(app, clock):
    """`make run` serves the demo with the simulator sped up; its demo tariff judges full in a minute."""
    from chargeshed.demo import load_demo
    from chargeshed.ports.sim import SimDriver
    from chargeshed.worker import sim_round

    speed = 240
    driver = SimDriver(clock, seed=7, speed=speed)  # auto-plugs a bike per session, as in `make run`
    load_demo(history_days=1, sessions_per_day=1, sim_speed=speed)
    from chargeshed.accounts.models import User

    resident = db.session.execute(select(User).where(User.login == "13800000001")).scalar_one()
    ports = db.session.execute(select(Port).order_by(Port.id).limit(8)).scalars().all()
    ended = {}
    for port in ports:
        if charging.live_session_on_port(port.id) is None and wallet_balance(resident.id) >= 300:
            session = charging.start_session(resident.id, port)
            db.session.commit()
            started = clock.now
            while session.is_live and clock.now - started < timedelta(minutes=10):
                sim_round(driver, clock.now)
                clock.advance(seconds=2)
                db.session.refresh(session)
            ended[port.code] = (session.end_reason, (clock.now - started).total_seconds(), session.cost_fen)
    assert ended
    for reason, seconds, cost in ended.values():
        if reason == "unplugged":  # the simulator leaves a few bikes unplugged, as in real life
            continue
        assert reason == "full" and seconds <= 180 and cost > 0


def test_a_cash_out_is_asked_for_before_any_money_moves(app, client, make_site, make_resident, login):
    from chargeshed.payments.models import CashOut

    user = login(make_resident(balance_fen=3000))
    asked = client.post("/wallet/cashout", data={"amount": "12.50", "request_key": "k"})
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200 and "确定提现 ¥12.50 吗？" in page and "钱包还剩 ¥17.50" in page
    assert db.session.query(CashOut).count() == 0 and wallet_balance(user.id) == 3000

    too_much = client.post("/wallet/cashout", data={"amount": "31", "request_key": "k"}).get_data(as_text=True)
    assert "¥30.00" in too_much and "确定提现" not in too_much

    done = client.post("/wallet/cashout", data={"amount": "12.50", "request_key": "k", "confirmed": "yes"})
    assert done.status_code == 302 and wallet_balance(user.id) == 1750
