"""Supervisor tick over 10,000 live sessions (target: ≤ 1 s per tick).

Ten thousand ports (500 sheds × 20) each charging a simulated bike. Measured: steady ticks
(nothing ends); a tick in which 10 bikes are unplugged (10 sessions end, settle, and their
stop commands go out; 10,000 sessions of 4–6 h end at about 3 per 5-second tick); and a burst
of 100 endings in one tick. On PostgreSQL (migrated scratch database) and SQLite.

    .venv/bin/python bench/supervisor_tick.py [--ports 10000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import datetime, timedelta

import _common
from sqlalchemy import func, insert, select

TARGET_MS = 1000


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def seed(ports: int, clock: Clock, driver, live_every: int = 1) -> None:
    """Sheds, ports, residents and live sessions (on every `live_every`-th port) in bulk; the simulated
    units of those ports switched on."""
    from chargeshed.accounts.models import User
    from chargeshed.charging.models import ChargeSession, Tariff
    from chargeshed.charging.tariff import default_tariff
    from chargeshed.extensions import db
    from chargeshed.money import ledger
    from chargeshed.ports.sim import LITHIUM, Bike
    from chargeshed.sites.models import Operator, Port, Shed, Site

    rules = default_tariff().to_dict()
    site, operator, tariff = (
        Site(name="基准小区"),
        Operator(name="基准运营"),
        Tariff(name="标准", rules=rules),
    )
    db.session.add_all([site, operator, tariff])
    db.session.flush()
    sheds = ports // 20
    db.session.execute(
        insert(Shed),
        [
            dict(
                site_id=site.id,
                operator_id=operator.id,
                tariff_id=tariff.id,
                name=f"{n}号车棚",
                location="",
                created_at=clock.now,
            )
            for n in range(1, sheds + 1)
        ],
    )
    shed_ids = db.session.execute(select(Shed.id).order_by(Shed.id)).scalars().all()
    started = clock.now - timedelta(minutes=30)
    db.session.execute(
        insert(Port),
        [
            dict(
                shed_id=shed_id,
                number=p,
                code=f"B{shed_id:04d}{p:02d}",
                label="",
                status="active",
                ocpp_state="Charging" if (i * 20 + p - 1) % live_every == 0 else "Available",
                watts=200 if (i * 20 + p - 1) % live_every == 0 else 0,
                last_seen_at=clock.now - timedelta(seconds=5),
                created_at=started,
            )
            for i, shed_id in enumerate(shed_ids)
            for p in range(1, 21)
        ],
    )
    db.session.execute(
        insert(User),
        [
            dict(
                login=f"1380000{n:04d}",
                password_hash="-",
                role="resident",
                display_name="",
                is_active_account=True,
                created_at=started,
            )
            for n in range(100)
        ],
    )
    user_ids = db.session.execute(select(User.id).order_by(User.id)).scalars().all()
    port_rows = db.session.execute(select(Port.id, Port.shed_id, Port.code).order_by(Port.id)).all()
    port_rows = [row for i, row in enumerate(port_rows) if i % live_every == 0]
    db.session.execute(
        insert(ChargeSession),
        [
            dict(
                user_id=user_ids[i % len(user_ids)],
                port_id=port_id,
                shed_id=shed_id,
                rules=rules,
                state="charging",
                hold_fen=300,
                cost_fen=0,
                energy_wh=100,
                watts=200,
                tier_watts=200,
                bucket_started_at=started,
                bucket_start_wh=0,
                created_at=started,
                confirmed_at=started,
            )
            for i, (port_id, shed_id, _code) in enumerate(port_rows)
        ],
    )
    # The holds the live sessions reserve (one balanced posting keeps the books consistent).
    held = 300 * len(port_rows)
    ledger.post(
        "bench:holds",
        "bench",
        [ledger.Leg(ledger.external_account("bench"), -held), ledger.Leg(ledger.holds_account(), held)],
    )
    db.session.commit()
    sessions = dict(db.session.execute(select(ChargeSession.port_id, ChargeSession.id)).all())
    now = clock.now
    clock.now = started
    for port_id, _shed_id, code in port_rows:
        driver.plug(code, bike=Bike(LITHIUM, cc_watts=200, cc_minutes=10_000))
        driver.start(code, f"S{sessions[port_id]}")
    clock.now = now


def run(database_url: str, ports: int) -> dict:
    from chargeshed import create_app
    from chargeshed.charging.models import ChargeSession
    from chargeshed.charging.supervisor import tick
    from chargeshed.extensions import db
    from chargeshed.money.ledger import check_ledger
    from chargeshed.ports.sim import SimDriver

    clock = Clock(datetime(2026, 11, 20, 20, 0, 0))
    app = create_app({"DATABASE_URL": database_url, "LOG_LEVEL": "WARNING", "TESTING": True})
    driver = SimDriver(clock, seed=3, auto_plug=False)
    app.extensions["clock"] = clock
    with app.app_context():
        if database_url.startswith("sqlite"):
            db.create_all()
        seed(ports, clock, driver)
        steady = []
        for _ in range(6):
            clock.now += timedelta(seconds=5)
            started = time.perf_counter()
            report = tick(driver, clock.now)
            steady.append((time.perf_counter() - started) * 1000)
            db.session.remove()
            assert report.ports_read == ports and not report.ended, report
        from chargeshed.sites.models import Port

        codes = db.session.execute(select(Port.code).order_by(Port.id)).scalars().all()
        endings = {}
        for count, chosen in ((10, codes[5::1000]), (100, codes[::100])):
            for code in chosen:
                driver.unplug(code)
            clock.now += timedelta(seconds=5)
            started = time.perf_counter()
            report = tick(driver, clock.now)
            endings[count] = ((time.perf_counter() - started) * 1000, sum(report.ended.values()))
            db.session.remove()
        live = db.session.execute(select(func.count()).where(ChargeSession.state == "charging")).scalar_one()
        problems = check_ledger()
        db.session.remove()
        db.engine.dispose()
    return {
        "steady": steady[1:],
        "first": steady[0],
        "endings": endings,
        "live": live,
        "ledger_ok": not problems,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=10_000)
    args = parser.parse_args()
    print(f"Supervisor tick, {args.ports} live sessions — {_common.machine()}")
    results = {}
    with _common.scratch_database("tick") as url:
        instance = _common.instance_folder()
        _common.migrate(url, instance)
        results["PostgreSQL"] = run(url, args.ports)
    with tempfile.TemporaryDirectory() as folder:
        results["SQLite"] = run(f"sqlite:///{os.path.join(folder, 'tick.sqlite3')}", args.ports)
    print(
        f"{'database':<11} {'steady tick p50 / max':>22} {'first tick':>11} {'10 ending':>10} "
        f"{'100 ending (burst)':>19}   target {TARGET_MS} ms"
    )
    for name, r in results.items():
        steady = sorted(r["steady"])
        (ten_ms, ten), (hundred_ms, hundred) = r["endings"][10], r["endings"][100]
        ok = max(max(steady), ten_ms) <= TARGET_MS
        print(
            f"{name:<11} {steady[len(steady) // 2]:>9.0f} / {max(steady):>6.0f} ms {r['first']:>8.0f} ms"
            f" {ten_ms:>7.0f} ms {hundred_ms:>16.0f} ms   steady and 10 ending: {_common.verdict(ok)}; "
            f"burst: {hundred_ms / max(hundred, 1):.0f} ms per settlement; ledger "
            f"{'OK' if r['ledger_ok'] and ten == 10 and hundred == 100 else 'PROBLEM'}"
        )


if __name__ == "__main__":
    main()
