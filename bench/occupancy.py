"""Occupancy grid at scale: 10,000 ports in one site. Prints figures; asserts nothing about time.

    .venv/bin/python bench/occupancy.py [--ports 10000] [--database-url URL]

Builds a throwaway database (SQLite in a temporary directory unless --database-url is given;
the schema is created from the models, as in the tests), fills it with sheds of 20 ports, about
40 % of them charging, then times through the real app:
  - the grid (htmx partial, 200; a page of sheds), as a fresh browser gets it,
  - an unchanged poll (If-None-Match, 304), what every open tab does every 10 seconds,
  - GET /healthz through the same client: the floor of a request, the reference for the 304,
  - the pieces: grid_version() alone and occupancy() for one page without the template,
  - refresh_versions(): what each supervisor tick pays to keep the version rows,
  - alerts.refresh() with every port healthy and with 1 % of ports offline.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PORTS_PER_SHED = 20


def timed(fn, repeat: int) -> tuple[float, object]:
    """Median wall time in ms over `repeat` runs, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def build(app, ports_total: int, seed: int = 1):
    """Sites, sheds, ports, residents and live sessions, inserted in bulk."""
    from sqlalchemy import insert, text

    from chargeshed.accounts.models import User
    from chargeshed.charging.models import ChargeSession, Tariff
    from chargeshed.charging.tariff import default_tariff
    from chargeshed.extensions import db
    from chargeshed.sites.models import Operator, Port, Shed, Site
    from chargeshed.timeutil import utcnow

    rnd = random.Random(seed)
    now = utcnow()
    site, operator = Site(name="Bench compound"), Operator(name="Bench operator")
    tariff = Tariff(name="std", rules=default_tariff().to_dict())
    db.session.add_all([site, operator, tariff])
    db.session.flush()
    sheds = ports_total // PORTS_PER_SHED
    db.session.execute(
        insert(Shed),
        [
            {
                "site_id": site.id,
                "operator_id": operator.id,
                "tariff_id": tariff.id,
                "name": f"Shed {n:04d}",
                "location": "",
                "created_at": now,
            }
            for n in range(sheds)
        ],
    )
    shed_ids = [s.id for s in db.session.query(Shed.id).order_by(Shed.id)]
    ports = []
    for shed_id in shed_ids:
        for number in range(1, PORTS_PER_SHED + 1):
            roll = rnd.random()
            state = "Charging" if roll < 0.4 else "SuspendedEV" if roll < 0.55 else "Available"
            watts = rnd.randint(120, 320) if state == "Charging" else 0
            changed = now - timedelta(minutes=rnd.randint(1, 300))
            ports.append(
                {
                    "shed_id": shed_id,
                    "number": number,
                    "code": f"B{len(ports):07d}",
                    "label": "",
                    "status": "active",
                    "ocpp_state": state,
                    "watts": watts,
                    "fault": None,
                    "last_seen_at": now,
                    "state_changed_at": changed,
                    "created_at": now,
                }
            )
    db.session.execute(insert(Port), ports)
    db.session.execute(
        insert(User),
        [
            {
                "login": f"1380000{n:04d}",
                "password_hash": "x",
                "role": "resident",
                "display_name": "",
                "is_active_account": True,
                "created_at": now,
            }
            for n in range(200)
        ],
    )
    user_ids = [u.id for u in db.session.query(User.id)]
    charging = (
        db.session.query(Port.id, Port.shed_id, Port.state_changed_at).filter(Port.ocpp_state == "Charging").all()
    )
    rules = default_tariff().to_dict()
    db.session.execute(
        insert(ChargeSession),
        [
            {
                "user_id": rnd.choice(user_ids),
                "port_id": pid,
                "shed_id": sid,
                "rules": rules,
                "state": "charging",
                "hold_fen": 300,
                "created_at": since,
                "confirmed_at": since,
            }
            for pid, sid, since in charging
        ],
    )
    from chargeshed.accounts.services import create_user

    db.session.commit()
    create_user("bench-admin", "bench-pass-1", "admin")
    db.session.commit()
    if db.engine.dialect.name == "postgresql":
        # Planner statistics, as autovacuum keeps them in production (fresh bulk loads have none).
        db.session.execute(text("ANALYZE"))
        db.session.commit()
    return site.id, len(charging)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=10_000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()

    from chargeshed import create_app
    from chargeshed.extensions import db

    tmp = tempfile.mkdtemp(prefix="bench-occupancy-")
    url = args.database_url or f"sqlite:///{tmp}/bench.sqlite3"
    app = create_app(
        {
            "DATABASE_URL": url,
            "SECRET_KEY": "bench",
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_ENABLED": False,
            "CHARGESHED_INSTANCE": tmp,
        }
    )
    with app.app_context():
        db.drop_all()
        db.create_all()  # a throwaway measurement database, like the tests'
        started = time.perf_counter()
        site_id, live = build(app, args.ports)
        print(
            f"database: {url.split(':')[0]}  ports: {args.ports}  charging: {live}  "
            f"built in {time.perf_counter() - started:.1f} s"
        )

        from sqlalchemy import select, update

        from chargeshed.charging import occupancy
        from chargeshed.ports import alerts
        from chargeshed.sites.models import Port, Shed
        from chargeshed.timeutil import utcnow
        from chargeshed.web.manage import SHEDS_PER_PAGE

        client = app.test_client()
        client.post("/login", data={"login": "bench-admin", "password": "bench-pass-1"})
        grid = f"/manage/sites/{site_id}/grid"
        hx = {"HX-Request": "true"}

        def refresh_versions():
            """One refresh as the tick does it: written and committed."""
            occupancy.refresh_versions(utcnow())
            db.session.commit()

        versions_first_ms, _ = timed(refresh_versions, 1)  # first: inserts the row
        versions_again_ms, _ = timed(refresh_versions, 5)
        health_ms, _ = timed(lambda: client.get("/healthz"), 20)
        full_ms, response = timed(lambda: client.get(grid, headers=hx), 5)
        assert response.status_code == 200, response.status_code
        etag = response.headers["ETag"]
        body = response.get_data()
        poll_ms, poll = timed(lambda: client.get(grid, headers={**hx, "If-None-Match": etag}), 20)
        shed_ids = select(Shed.id).where(Shed.site_id == site_id)
        version_ms, _ = timed(lambda: occupancy.grid_version(site_id, utcnow()), 20)
        page_ids = occupancy.shed_page(shed_ids, 1, SHEDS_PER_PAGE).shed_ids
        data_ms, blocks = timed(lambda: occupancy.occupancy(page_ids, utcnow()), 5)
        page_ms, page = timed(lambda: client.get(f"/manage/sites/{site_id}"), 3)

        refresh_ok_ms, _ = timed(lambda: alerts.refresh(utcnow()), 5)
        stale = utcnow() - timedelta(minutes=10)
        ids = [pid for (pid,) in db.session.execute(select(Port.id).order_by(Port.id)).all()][::100]
        db.session.execute(update(Port).where(Port.id.in_(ids)).values(last_seen_at=stale))
        db.session.commit()
        refresh_first_ms, raised = timed(lambda: alerts.refresh(utcnow()), 1)
        refresh_again_ms, _ = timed(lambda: alerts.refresh(utcnow()), 5)

    print(f"{'what':<60}{'median ms':>10}")
    rows = [
        (f"grid, htmx partial 200, one page ({len(body) / 1024:.0f} KiB)", full_ms),
        (f"unchanged poll, If-None-Match -> {poll.status_code}", poll_ms),
        ("  reference: GET /healthz through the same client", health_ms),
        ("  grid_version() alone (one row)", version_ms),
        (f"  occupancy() data alone, one page ({sum(len(b.cells) for b in blocks)} cells)", data_ms),
        (f"whole occupancy page ({len(page.get_data()) / 1024:.0f} KiB)", page_ms),
        ("refresh_versions() in the tick, first (writes the row)", versions_first_ms),
        ("refresh_versions() in the tick, unchanged", versions_again_ms),
        ("alerts.refresh(), all ports healthy", refresh_ok_ms),
        (f"alerts.refresh(), 1 % offline, first ({raised['raised']} raised)", refresh_first_ms),
        ("alerts.refresh(), 1 % offline, again (nothing new)", refresh_again_ms),
    ]
    for label, ms in rows:
        print(f"{label:<60}{ms:>10.1f}")


if __name__ == "__main__":
    main()
