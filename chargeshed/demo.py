"""The demo compound from the brief, with 30 days of simulated history. Idempotent."""

from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, timedelta

from flask import current_app
from sqlalchemy import select

from chargeshed.accounts import services as accounts
from chargeshed.accounts.models import ROLE_ADMIN, ROLE_OPERATOR_STAFF, ROLE_RESIDENT, ROLE_SITE_MANAGER, User
from chargeshed.charging import sessions as charging
from chargeshed.charging.models import Tariff
from chargeshed.charging.tariff import Tariff as TariffRules
from chargeshed.charging.tariff import default_tariff
from chargeshed.extensions import db
from chargeshed.payments import fulfilment
from chargeshed.payments.providers import Payment
from chargeshed.sites.codes import new_port_code
from chargeshed.sites.models import Building, Operator, Port, Shed, Site
from chargeshed.timeutil import now as clock_now

SITE_NAME = "信中央皇庭小区"
SITE_ADDRESS = "湖南省株洲市荷塘区桂花街道"
OPERATOR_NAME = "株洲安充新能源科技有限公司"
SHEDS = [("1号车棚", "4栋北侧", 20), ("2号车棚", "8栋与9栋之间", 12), ("3号车棚", "11栋东侧", 16)]
DEMO_PASSWORD = "demo1234"
STAFF = [
    ("admin", ROLE_ADMIN, "管理员"),
    ("manager", ROLE_SITE_MANAGER, "物业 王经理"),
    ("operator", ROLE_OPERATOR_STAFF, "运营 李工"),
]
RESIDENTS = [
    ("13800000001", 4, 1),
    ("13800000002", 10, 2),
    ("13800000003", 2, 1),
    ("13800000004", 7, 2),
    ("13800000005", 12, 1),
    ("13800000006", 5, 2),
]
REASONS = [
    (charging.FULL, 62),
    (charging.USER_STOP, 18),
    (charging.TIME_UP, 6),
    (charging.HOLD_EXHAUSTED, 4),
    (charging.UNPLUGGED, 5),
    (charging.OVERLOAD, 1),
    (charging.PORT_FAULT, 1),
    (charging.START_FAILED, 3),
]


# From this speed-up on, the demo tariff judges "full" after one minute (see demo_tariff).
QUICK_FULL_SPEED = 60


def demo_tariff(sim_speed: float = 1.0) -> tuple[str, TariffRules]:
    """The demo compound's tariff (name, rules).

    The simulator compresses the charge curve `sim_speed` times, but the rules and the meter run in real
    time: "below 10 W for 10 minutes" would keep a sped-up demo charge waiting ten real minutes, and a
    whole simulated charge meters only a few Wh. So with a fast simulator (`make run`) the demo tariff,
    named as such, judges a charge full after one minute below the threshold and bills from 1 Wh.
    """
    rules = default_tariff()
    if sim_speed < QUICK_FULL_SPEED:
        return "标准电价", rules
    return "演示电价（模拟加速）", replace(rules, full_minutes=1, min_billable_wh=1)


def load_demo(history_days: int = 30, sessions_per_day: int = 40, seed: int = 2026, sim_speed: float = 1.0) -> dict:
    """Create the demo compound if absent; returns counts of what was created.

    `sim_speed` is the simulator's speed-up the demo will be served with (see demo_tariff).
    """
    if db.session.execute(select(Site).where(Site.name == SITE_NAME)).scalar_one_or_none() is not None:
        return {"created": False}
    site = Site(name=SITE_NAME, address=SITE_ADDRESS)
    operator = Operator(name=OPERATOR_NAME)
    tariff_name, rules = demo_tariff(sim_speed)
    tariff = Tariff(name=tariff_name, rules=rules.to_dict())
    db.session.add_all([site, operator, tariff])
    db.session.flush()
    db.session.add_all(Building(site_id=site.id, number=n) for n in range(1, 13))
    ports = []
    used_codes: set[str] = set()
    for name, location, count in SHEDS:
        shed = Shed(site_id=site.id, operator_id=operator.id, tariff_id=tariff.id, name=name, location=location)
        db.session.add(shed)
        db.session.flush()
        for number in range(1, count + 1):
            code = new_port_code()
            while code in used_codes:
                code = new_port_code()
            used_codes.add(code)
            ports.append(Port(shed_id=shed.id, number=number, code=code, label=f"{name} {number}号插座"))
    db.session.add_all(ports)
    db.session.commit()

    for login, role, name in STAFF:
        accounts.create_user(
            login,
            DEMO_PASSWORD,
            role,
            display_name=name,
            site_id=site.id,
            operator_id=operator.id if role == ROLE_OPERATOR_STAFF else None,
        )
    residents = [
        accounts.create_user(phone, DEMO_PASSWORD, ROLE_RESIDENT, site_id=site.id, building=b, unit=u)
        for phone, b, u in RESIDENTS
    ]
    from chargeshed.passes.models import PassPlan

    db.session.add(
        PassPlan(
            site_id=site.id,
            name="30天月卡",
            price_fen=1500,
            days=30,
            charges_per_day=2,
            hours_per_charge=8,
            max_watts=400,
        )
    )
    db.session.commit()
    first_day = (clock_now() - timedelta(days=history_days + 1)).date().replace(day=1)
    _agreement(site, operator, first_day)
    db.session.commit()
    sessions = _history(residents, ports, history_days, sessions_per_day, random.Random(seed))
    return {"created": True, "ports": len(ports), "residents": len(residents), "sessions": sessions}


@contextmanager
def _clock_at(moment):
    """Book history at its own time: ledger rows take their timestamps from the app clock."""
    extensions = current_app.extensions
    previous = extensions.get("clock")
    extensions["clock"] = lambda: moment
    try:
        yield
    finally:
        extensions["clock"] = previous


def _top_up(user: User, amount_fen: int, at) -> None:
    with _clock_at(at):
        topup = fulfilment.create_topup(user.id, amount_fen, [amount_fen], "cny", "demo")
        topup.checkout_ref = f"demo_{topup.id}"
        db.session.commit()
        fulfilment.fulfil(topup.id, Payment(topup.checkout_ref, None, amount_fen, "cny"), now=at)
        db.session.commit()


def _agreement(site: Site, operator: Operator, start: date) -> None:
    """The split the three parties agreed: operator 60 %, property company 30 %, owners' committee 10 %."""
    from chargeshed.settlement.agreements import PartyInput, create_agreement
    from chargeshed.settlement.models import FEES_SHARED, ROLE_OPERATOR, ROLE_OWNERS, ROLE_PROPERTY

    create_agreement(
        operator_id=operator.id,
        site_id=site.id,
        shed_id=None,
        valid_from=start,
        valid_to=None,
        electricity_fen_per_kwh=62,
        fee_mode=FEES_SHARED,
        parties=[
            PartyInput(OPERATOR_NAME, ROLE_OPERATOR, 6000),
            PartyInput("株洲某物业服务有限公司", ROLE_PROPERTY, 3000, pays_electricity=True),
            PartyInput("信中央皇庭小区业主委员会", ROLE_OWNERS, 1000),
        ],
        note="三方协议：物业垫付电费，按电表读数先行返还；手续费分摊后按比例分成。",
    )


def _history(residents: list[User], ports: list[Port], days: int, per_day: int, rnd: random.Random) -> int:
    """Book past charges through the real services, so every figure comes from the ledger."""
    start_day = clock_now().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days)
    port_free_at = {port.id: start_day for port in ports}
    for user in residents:
        _top_up(user, 5000, start_day - timedelta(hours=1))
    reasons, weights = zip(*REASONS, strict=True)
    count = 0
    for day in range(days):
        # Evenings (local time, UTC+8) are busy: people come home and plug in. Booked in time order, so
        # ids follow the clock as they do in real use.
        begins = sorted(
            start_day
            + timedelta(days=day, hours=min(23, max(0, int(rnd.gauss(19.5, 3.0)))) - 8, minutes=rnd.randrange(60))
            for _ in range(int(per_day * rnd.uniform(0.7, 1.2)))
        )
        for begin in begins:
            port = rnd.choice(ports)
            if port_free_at[port.id] > begin:
                continue
            user = rnd.choice(residents)
            hold = port.shed.tariff.terms.hold_fen
            if charging.ledger.wallet_balance(user.id) < hold:
                _top_up(user, rnd.choice([1000, 2000, 5000]), begin - timedelta(minutes=2))
            with _clock_at(begin):
                session = charging.start_session(user.id, port, now=begin)
                db.session.commit()
            reason = rnd.choices(reasons, weights)[0]
            if reason == charging.START_FAILED:
                with _clock_at(begin + timedelta(seconds=60)):
                    charging.fail_session(session, reason, begin + timedelta(seconds=60))
                    db.session.commit()
                port_free_at[port.id] = begin + timedelta(minutes=1)
                continue
            charging.mark_charging(session, begin + timedelta(seconds=5))
            minutes = {
                charging.UNPLUGGED: 1,
                charging.OVERLOAD: 1,
                charging.PORT_FAULT: rnd.randint(5, 90),
                charging.TIME_UP: 720,
                charging.HOLD_EXHAUSTED: 600,
            }.get(reason, rnd.randint(90, 400))
            watts = 1500 if reason == charging.OVERLOAD else rnd.randint(120, 330)
            session.tier_watts = watts
            session.watts = watts
            session.energy_wh = 0 if reason == charging.UNPLUGGED else int(watts * minutes / 60 * 0.8)
            end = begin + timedelta(minutes=minutes, seconds=5)
            with _clock_at(end):
                charging.end_session(session, reason, end, stop_port=False)
                db.session.commit()
            port_free_at[port.id] = end + timedelta(minutes=rnd.randint(5, 120))
            count += 1
    return count
