"""包月: plans per site, bought from the wallet, free at stop but metered, limits, renewal, pro-rata refund,
reminders, and revenue recognised per day of validity (exact across a month boundary)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import select

from chargeshed.accounts.models import ROLE_OPERATOR_STAFF
from chargeshed.accounts.services import create_user
from chargeshed.charging.models import ChargeSession
from chargeshed.extensions import db
from chargeshed.money.ledger import check_ledger, wallet_balance
from chargeshed.notify.consent import set_consent
from chargeshed.notify.models import Notification
from chargeshed.passes import service as passes
from chargeshed.passes.models import MonthlyPass, PassPlan
from chargeshed.ports.sim import Bike


def _plan(site, **fields) -> PassPlan:
    values = dict(
        site_id=site.id, name="月卡", price_fen=1500, days=30, charges_per_day=2, hours_per_charge=8, max_watts=400
    )
    plan = PassPlan(**{**values, **fields})
    db.session.add(plan)
    db.session.commit()
    return plan


def test_the_operator_sets_plans_per_site_with_clear_messages(app, client, make_site):
    site = make_site()
    assert "本小区暂未销售包月" in client.get(f"/site/{site.id}/passes").get_data(as_text=True)
    staff = create_user("op1", "secret-pass", ROLE_OPERATOR_STAFF)
    from chargeshed.sites.models import Operator

    staff.operator_id = db.session.execute(select(Operator.id)).scalar_one()
    db.session.commit()
    client.post("/login", data={"login": "op1", "password": "secret-pass"})
    bad = client.post(
        f"/operator/passes/{site.id}",
        data={
            "name": "",
            "price": "abc",
            "days": "0",
            "charges_per_day": "2",
            "hours_per_charge": "8",
            "max_watts": "400",
        },
    )
    body = bad.get_data(as_text=True)
    assert bad.status_code == 400 and "请填写套餐名称" in body and "1 到 366 天" in body
    assert db.session.query(PassPlan).count() == 0  # nothing half-saved
    done = client.post(
        f"/operator/passes/{site.id}",
        data={
            "name": "月卡",
            "price": "15",
            "days": "30",
            "charges_per_day": "2",
            "hours_per_charge": "8",
            "max_watts": "400",
        },
    )
    assert done.status_code == 302
    plan = db.session.execute(select(PassPlan)).scalar_one()
    assert (plan.price_fen, plan.days, plan.max_watts) == (1500, 30, 400)
    explained = client.get(f"/site/{site.id}/passes").get_data(as_text=True)
    assert "月卡：¥15.00 / 30 天。每天最多充 2 次，每次最多 8 小时" in explained


def test_buy_use_free_at_stop_daily_limit_renewal_and_refund(
    app, client, make_site, make_resident, login, driver, clock, tick
):
    site = make_site()
    plan = _plan(site, charges_per_day=1)
    user = login(make_resident(balance_fen=1000))

    short = client.get(f"/passes/buy/{plan.id}").get_data(as_text=True)
    assert 'data-testid="pass-short"' in short  # ¥10 does not cover ¥15
    client.post(f"/passes/buy/{plan.id}")
    assert db.session.query(MonthlyPass).count() == 0 and wallet_balance(user.id) == 1000

    user2 = login(make_resident(balance_fen=5000))
    confirm = client.get(f"/passes/buy/{plan.id}").get_data(as_text=True)
    today = passes.local_day(clock.now)
    assert "确定购买“月卡”吗？" in confirm and f"包月有效期 {today} 至 {today + timedelta(days=29)}（30 天）" in confirm
    assert 'data-testid="pass-renewal"' not in confirm
    client.post(f"/passes/buy/{plan.id}")
    assert wallet_balance(user2.id) == 3500

    port_page = client.get("/p/T11001").get_data(as_text=True)
    assert 'href="/p/T11001/pass"' in port_page and 'href="/site/1/passes"' in port_page
    pass_page = client.get("/p/T11001/pass").get_data(as_text=True)
    assert 'data-testid="start-pass"' in pass_page and "本次充电不扣费" in pass_page
    driver.plug("T11001", bike=Bike("lithium", cc_watts=250, cc_minutes=600, taper_minutes=30))
    started = client.post("/p/T11001/start", data={"use_pass": "yes"})
    session = db.session.execute(select(ChargeSession)).scalar_one()
    assert started.headers["Location"].endswith(f"/s/{session.id}") and session.hold_fen == 0
    assert wallet_balance(user2.id) == 3500
    tick()
    clock.advance(minutes=90)
    tick()
    live = client.get(f"/s/{session.id}/live", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'data-fen="0"' in live and "包月充电" in live
    client.post(f"/s/{session.id}/stop")
    db.session.refresh(session)
    assert session.energy_wh > 300 and session.cost_fen == 0 and wallet_balance(user2.id) == 3500

    refused = client.post("/p/T11002/start", data={"use_pass": "yes"})
    assert refused.headers["Location"].endswith("/p/T11002/pass")
    assert "今天的包月充电次数已用完" in client.get("/p/T11002/pass").get_data(as_text=True)

    first = db.session.execute(select(MonthlyPass)).scalar_one()
    assert f"现在购买将从 {first.ends_on}（您当前包月结束后）开始" in client.get("/passes").get_data(as_text=True)
    renewal = client.get(f"/passes/buy/{plan.id}").get_data(as_text=True)
    assert f"包月有效期 {first.ends_on} 至 {first.ends_on + timedelta(days=29)}" in renewal
    assert 'data-testid="pass-renewal"' in renewal
    client.post(f"/passes/buy/{plan.id}")  # renewal: starts when the first ends
    second = client.post(f"/passes/buy/{plan.id}")
    assert second.status_code == 302
    rows = db.session.execute(select(MonthlyPass).order_by(MonthlyPass.id)).scalars().all()
    assert len(rows) == 2 and rows[1].starts_on == rows[0].ends_on
    assert "您已续费" in client.get("/passes").get_data(as_text=True)
    waiting = client.get(f"/passes/buy/{plan.id}").get_data(as_text=True)
    assert 'data-testid="pass-refused"' in waiting and 'data-testid="pass-confirm"' not in waiting
    assert 'data-testid="plan-renewed"' in client.get("/passes").get_data(as_text=True)

    clock.advance(days=9)  # 10 days begun of 30: ¥15 - ¥5 = ¥10 back
    assert passes.refund_amount(rows[0], passes.local_day(clock.now)) == 1000
    assert "已使用 10 / 30 天" in client.get(f"/passes/{rows[0].id}/refund").get_data(as_text=True)
    client.post(f"/passes/{rows[0].id}/refund")
    assert wallet_balance(user2.id) == 3500 - 1500 + 1000
    assert client.post(f"/passes/{rows[0].id}/refund").status_code == 302  # twice: a message, no money
    assert wallet_balance(user2.id) == 3000 and check_ledger() == []
    statement = client.get("/wallet/statement").get_data(as_text=True)
    assert "购买包月" in statement and "包月未用天数退款" in statement


def test_a_pass_charge_stops_above_the_plans_tier(app, client, make_site, make_resident, login, driver, clock, tick):
    site = make_site()
    plan = _plan(site, max_watts=200)
    login(make_resident(balance_fen=2000))
    client.post(f"/passes/buy/{plan.id}")
    driver.plug("T11001", bike=Bike("lithium", cc_watts=320, cc_minutes=600, taper_minutes=30))
    client.post("/p/T11001/start", data={"use_pass": "yes"})
    tick()
    for _minute in range(3):
        clock.advance(minutes=1)
        tick()
    session = db.session.execute(select(ChargeSession)).scalar_one()
    assert (session.state, session.end_reason, session.cost_fen) == ("ended", "over_pass_tier", 0)


def test_revenue_is_recognised_per_day_and_months_add_up_exactly(app, make_site, make_resident):
    site = make_site()
    plan = _plan(site, price_fen=1000, days=30)
    user = make_resident(balance_fen=5000)
    bought_at = datetime(2026, 10, 20, 4, 0)  # 12:00 in Zhuzhou, 20 October
    first = passes.buy(user.id, plan, bought_at)
    second = passes.buy(user.id, plan, bought_at)  # renewal from 19 November
    db.session.commit()
    october = passes.pass_revenue(site.id, date(2026, 10, 1), date(2026, 11, 1))
    november = passes.pass_revenue(site.id, date(2026, 11, 1), date(2026, 12, 1))
    december = passes.pass_revenue(site.id, date(2026, 12, 1), date(2027, 1, 1))
    assert october == 1000 * 12 // 30  # 20–31 October: 12 days
    assert october + november + december == 2000  # exact to the fen across months
    passes.refund(second, datetime(2026, 11, 30, 4, 0))  # 12 of its 30 days begun
    db.session.commit()
    assert second.refunded_fen == 1000 - 1000 * 12 // 30
    total = sum(
        passes.pass_revenue(site.id, date(2026, m, 1), date(2026 + m // 12, m % 12 + 1, 1)) for m in (10, 11, 12)
    )
    assert total + second.refunded_fen == 2000 and first.status == "active" and check_ledger() == []


def test_a_renewal_reminder_is_sent_once_three_days_before_the_end(app, make_site, make_resident):
    site = make_site()
    plan = _plan(site)
    user = make_resident(balance_fen=2000)
    set_consent(user.id, "sms", user.login, datetime(2026, 11, 1))
    monthly_pass = passes.buy(user.id, plan, datetime(2026, 11, 1, 4, 0))
    db.session.commit()
    assert passes.remind_expiring(datetime(2026, 11, 20, 4, 0)) == 0
    assert passes.remind_expiring(datetime(2026, 11, 28, 4, 0)) == 1
    assert passes.remind_expiring(datetime(2026, 11, 29, 4, 0)) == 0
    db.session.commit()
    note = db.session.execute(select(Notification)).scalar_one()
    assert note.template == "pass_expiring" and note.data["until"] == "2026-11-30"
    assert monthly_pass.ends_on == date(2026, 12, 1)
