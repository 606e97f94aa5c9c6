"""Supervisor tick over 10,000 live sessions (target: ≤ 1 s per tick, bursts of 100 endings included).

Ten thousand ports (500 sheds × 20) each charging a simulated bike. Before each tick the simulated
units publish their readings into the telemetry store (what gateways do; timed apart as "publish").
Measured: steady ticks (nothing ends); a tick in which 10 bikes are unplugged (10 sessions end and
settle, their stops queued; 10,000 sessions of 4–6 h end at about 3 per 5-second tick); and three
bursts of 100 endings in one tick, reported as median and spread and as a ratio to the steady tick
of the same run. On PostgreSQL (migrated scratch database) and SQLite.

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
    from chargeshed.ports.models import PortTelemetry

    # The telemetry the units' device-side sessions left: running our session since `started`.
    db.session.execute(
        insert(PortTelemetry),
        [
            dict(
                port_id=port_id,
                target="sim",
                scheme="sim",
                device="sim",
                state="Charging",
                watts=200,
                relay_on=True,
                meter_wh=0,
                energy_wh=0,
                reading_at=started,
                heard_at=started,
                link_online=True,
                link_changed_at=started,
                session_ref=f"S{sessions[port_id]}",
                session_started_at=started,
                session_start_wh=0,
            )
            for port_id, _shed_id, _code in port_rows
        ],
    )
    db.session.commit()
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
    from chargeshed.ports.sim import SimAdapter, SimDriver
    from chargeshed.sites.models import Port

    clock = Clock(datetime(2026, 11, 20, 20, 0, 0))
    app = create_app({"DATABASE_URL": database_url, "LOG_LEVEL": "WARNING", "TESTING": True})
    driver = SimDriver(clock, seed=3, auto_plug=False)
    devices = SimAdapter(driver)
    app.extensions["clock"] = clock
    publish: list[float] = []

    def timed_tick():
        clock.now += timedelta(seconds=5)
        started = time.perf_counter()
        devices.publish()
        publish.append((time.perf_counter() - started) * 1000)
        db.session.remove()
        started = time.perf_counter()
        report = tick(clock.now)
        elapsed = (time.perf_counter() - started) * 1000
        db.session.remove()
        return elapsed, report

    with app.app_context():
        if database_url.startswith("sqlite"):
            db.create_all()
        seed(ports, clock, driver)
        steady = []
        for _ in range(6):
            elapsed, report = timed_tick()
            steady.append(elapsed)
            assert report.ports_read == ports and not report.ended, report
        codes = db.session.execute(select(Port.code).order_by(Port.id)).scalars().all()
        endings = {}
        for count, chosen in ((10, codes[5::1000]), (100, codes[0::100]), (101, codes[1::100]), (102, codes[2::100])):
            for code in chosen:
                driver.unplug(code)
            elapsed, report = timed_tick()
            endings[count] = (elapsed, sum(report.ended.values()))
            # Between bursts, a steady tick as the reference of the same moment.
            reference, _report = timed_tick()
            steady.append(reference)
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
        "publish": publish,
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
        f"{'burst of 100: median (spread)':>30} {'÷ steady':>9} {'publish p50':>12}   target {TARGET_MS} ms"
    )
    for name, r in results.items():
        steady = sorted(r["steady"])
        p50 = steady[len(steady) // 2]
        ten_ms, ten = r["endings"][10]
        bursts = sorted(r["endings"][key][0] for key in (100, 101, 102))
        settled = [r["endings"][key][1] for key in (100, 101, 102)]
        ok = max(max(steady), ten_ms, max(bursts)) <= TARGET_MS
        publish = sorted(r["publish"])[len(r["publish"]) // 2]
        print(
            f"{name:<11} {p50:>9.0f} / {max(steady):>6.0f} ms {r['first']:>8.0f} ms {ten_ms:>7.0f} ms"
            f" {bursts[1]:>15.0f} ms ({bursts[0]:.0f}–{bursts[2]:.0f}) {bursts[1] / p50:>8.1f}×"
            f" {publish:>9.0f} ms   {_common.verdict(ok)}; "
            f"burst: {bursts[1] / 100:.1f} ms per settlement; ledger "
            f"{'OK' if r['ledger_ok'] and ten == 10 and settled == [100, 100, 100] else 'PROBLEM'}"
        )


if __name__ == "__main__":
    main()
