"""A month's settlement statement over 1,000,000 sessions, next to a bare SQL GROUP BY over the same rows.

Targets: the statement's figures (chargeshed.settlement.figures.compute_figures) within 2 × the bare
GROUP BY time, and ≤ 200 MB peak memory. A migrated PostgreSQL scratch database gets, loaded with
COPY, 1,000,000 sessions that ended in October 2026 in 10 sheds of one operator's site, each with its
hold and its settlement in the ledger (2,000,000 transactions, 5,000,000 entries), and a revenue-split
agreement. The bare reference is the two aggregations the statement needs (revenue per shed and local
day, sessions and energy per shed and local day), as plain SQL through psycopg.

    .venv/bin/python bench/settlement_month.py [--sessions 1000000]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time
import tracemalloc
from datetime import date, datetime, timedelta

import _common
import psycopg

TARGET_RATIO, TARGET_MB = 2.0, 200
SHEDS, USERS = 10, 2000
MONTH = "2026-10"


def copy_rows(cursor, table: str, columns: tuple[str, ...], rows) -> None:
    """COPY an iterable of tuples into `table`, in chunks."""
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def load(url: str, sessions: int) -> None:
    """Site, operator, sheds, users, accounts, agreement; then sessions and their ledger rows by COPY."""
    from chargeshed import create_app
    from chargeshed.charging.models import Tariff
    from chargeshed.charging.tariff import default_tariff
    from chargeshed.extensions import db
    from chargeshed.money import ledger
    from chargeshed.settlement.agreements import PartyInput, create_agreement
    from chargeshed.sites.models import Operator, Port, Shed, Site

    rules = default_tariff().to_dict()
    app = create_app({"DATABASE_URL": url, "TESTING": True})
    with app.app_context():
        site, operator, tariff = (
            Site(name="基准小区"),
            Operator(name="基准运营"),
            Tariff(name="标准", rules=rules),
        )
        db.session.add_all([site, operator, tariff])
        db.session.flush()
        sheds = [
            Shed(site_id=site.id, operator_id=operator.id, tariff_id=tariff.id, name=f"{n}号车棚")
            for n in range(1, SHEDS + 1)
        ]
        db.session.add_all(sheds)
        db.session.flush()
        ports = [Port(shed_id=shed.id, number=p, code=f"S{shed.id:02d}{p:02d}") for shed in sheds for p in range(1, 21)]
        db.session.add_all(ports)
        db.session.commit()
        create_agreement(
            operator_id=operator.id,
            site_id=site.id,
            shed_id=None,
            valid_from=date(2026, 1, 1),
            valid_to=None,
            electricity_fen_per_kwh=60,
            fee_mode="shared",
            parties=[
                PartyInput("运营公司", "operator", 6000, pays_electricity=True),
                PartyInput("物业", "property", 2500),
                PartyInput("业委会", "owners_committee", 1500),
            ],
        )
        holds = ledger.holds_account()
        revenue = {shed.id: ledger.revenue_account(shed.id).id for shed in sheds}
        db.session.commit()
        ids = {
            "site": site.id,
            "operator": operator.id,
            "holds": holds.id,
            "revenue": revenue,
            "ports": [(p.id, p.shed_id) for p in ports],
        }
        db.session.remove()
        db.engine.dispose()

    rnd = random.Random(2026)
    start = datetime(2026, 9, 30, 16, 0)  # local midnight of 1 October, in UTC
    seconds = 31 * 24 * 3600
    rules_text = json.dumps(rules)
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn, conn.cursor() as cur:
        copy_rows(
            cur,
            '"user"',
            ("id", "login", "password_hash", "role", "display_name", "is_active_account", "created_at"),
            ((n, f"1370000{n:04d}", "-", "resident", "", True, start) for n in range(1001, 1001 + USERS)),
        )
        copy_rows(
            cur,
            "ledger_account",
            ("id", "code", "kind", "owner_id", "balance_fen"),
            [(99999, "external:bench", "external", None, 0)]
            + [(100000 + n, f"wallet:{n}", "wallet", n, 0) for n in range(1001, 1001 + USERS)],
        )
        # Each resident topped up enough before the month (so no wallet ever goes below zero).
        topup_fen = 300 * (sessions // USERS + 2)
        first_txn = 2 * sessions + 1
        copy_rows(
            cur,
            "ledger_txn",
            ("id", "ref", "kind", "memo", "created_at"),
            (
                (first_txn + i, f"topup:bench:{n}", "topup", "", start - timedelta(days=1))
                for i, n in enumerate(range(1001, 1001 + USERS))
            ),
        )
        plan = []
        for sid in range(1, sessions + 1):
            port_id, shed_id = ids["ports"][rnd.randrange(len(ids["ports"]))]
            begun = start + timedelta(seconds=rnd.randrange(seconds - 8 * 3600))
            minutes = rnd.randint(60, 420)
            cost = min(300, -(-minutes // 60) * rnd.choice((25, 25, 25, 50)))
            plan.append(
                (
                    sid,
                    1001 + sid % USERS,
                    port_id,
                    shed_id,
                    begun,
                    begun + timedelta(minutes=minutes),
                    cost,
                    minutes * rnd.randint(150, 300) // 60,
                )
            )
        copy_rows(
            cur,
            "charge_session",
            (
                "id",
                "user_id",
                "port_id",
                "shed_id",
                "rules",
                "state",
                "end_reason",
                "hold_fen",
                "cost_fen",
                "energy_wh",
                "watts",
                "tier_watts",
                "bucket_start_wh",
                "created_at",
                "confirmed_at",
                "ended_at",
            ),
            (
                (
                    sid,
                    uid,
                    pid,
                    shed,
                    rules_text,
                    "ended",
                    "full",
                    300,
                    cost,
                    wh,
                    0,
                    200,
                    0,
                    begun,
                    begun,
                    ended,
                )
                for sid, uid, pid, shed, begun, ended, cost, wh in plan
            ),
        )
        copy_rows(
            cur,
            "ledger_txn",
            ("id", "ref", "kind", "memo", "created_at"),
            (
                row
                for sid, _u, _p, _s, begun, ended, _c, _w in plan
                for row in (
                    (2 * sid - 1, f"hold:{sid}", "hold", "", begun),
                    (2 * sid, f"settle:{sid}", "settle", "", ended),
                )
            ),
        )

        def entries():
            n = 0
            for i, uid in enumerate(range(1001, 1001 + USERS)):
                for account, amount in ((99999, -topup_fen), (100000 + uid, topup_fen)):
                    n += 1
                    yield (n, first_txn + i, account, amount)
            for sid, uid, _p, shed, _b, _e, cost, _w in plan:
                wallet = 100000 + uid
                legs = [
                    (2 * sid - 1, wallet, -300),
                    (2 * sid - 1, ids["holds"], 300),
                    (2 * sid, ids["holds"], -300),
                    (2 * sid, ids["revenue"][shed], cost),
                ]
                if cost < 300:
                    legs.append((2 * sid, wallet, 300 - cost))
                for txn, account, amount in legs:
                    if amount:
                        n += 1
                        yield (n, txn, account, amount)

        copy_rows(cur, "ledger_entry", ("id", "txn_id", "account_id", "amount_fen"), entries())
        cur.execute(
            "UPDATE ledger_account a SET balance_fen = s.total FROM (SELECT account_id, sum(amount_fen) "
            "AS total FROM ledger_entry GROUP BY account_id) s WHERE s.account_id = a.id"
        )
        for table in ("user", "ledger_account", "charge_session", "ledger_txn", "ledger_entry"):
            quoted = f'"{table}"'
            highest = f"(SELECT max(id) FROM {quoted})"
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{quoted}', 'id'), {highest})")
        conn.commit()
        conn.autocommit = True
        cur.execute("VACUUM ANALYZE")
    return ids


BARE_SQL = [
    """SELECT e.account_id, CAST(t.created_at + INTERVAL '8 hours' AS date), t.kind = 'settle',
              sum(e.amount_fen)
       FROM ledger_entry e JOIN ledger_txn t ON t.id = e.txn_id
       WHERE e.account_id = ANY(%(accounts)s) AND t.created_at >= %(start)s AND t.created_at < %(end)s
       GROUP BY 1, 2, 3""",
    """SELECT shed_id, CAST(ended_at + INTERVAL '8 hours' AS date), count(id), sum(energy_wh)
       FROM charge_session
       WHERE shed_id = ANY(%(sheds)s) AND state = 'ended' AND ended_at >= %(start)s AND ended_at < %(end)s
       GROUP BY 1, 2""",
]


def bare(url: str, ids: dict) -> float:
    start, end = datetime(2026, 9, 30, 16), datetime(2026, 10, 31, 16)
    params = {
        "accounts": list(ids["revenue"].values()),
        "sheds": list(ids["revenue"]),
        "start": start,
        "end": end,
    }
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        started = time.perf_counter()
        for query in BARE_SQL:
            conn.execute(query, params).fetchall()
        return (time.perf_counter() - started) * 1000


def statement(url: str, ids: dict) -> tuple[float, float, float, dict]:
    """compute_figures in a fresh process: ms, peak Python allocations (MB), the process's peak RSS (MB)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_statement_in_child, (url, ids))


def _statement_in_child(url: str, ids: dict) -> tuple[float, float, float, dict]:
    from chargeshed import create_app
    from chargeshed.extensions import db
    from chargeshed.settlement.figures import compute_figures
    from chargeshed.settlement.periods import Period

    app = create_app({"DATABASE_URL": url, "TESTING": True})
    with app.app_context():
        # Warm, like a running web process: connection open, statements compiled (on an empty month).
        compute_figures(ids["operator"], ids["site"], Period.month("2026-08"))
        db.session.rollback()
        gc.collect()
        tracemalloc.start()
        started = time.perf_counter()
        figures = compute_figures(ids["operator"], ids["site"], Period.month(MONTH))
        elapsed = (time.perf_counter() - started) * 1000
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        db.session.remove()
        db.engine.dispose()
    return elapsed, peak, peak_rss_mb(), figures


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it does not carry the parent's
    peak over fork and exec)."""
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmHWM")).split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"Settlement of {MONTH}, {args.sessions:,} sessions — {_common.machine()}")
    with _common.scratch_database("settlement") as url:
        instance = _common.instance_folder()
        _common.migrate(url, instance)
        started = time.perf_counter()
        ids = load(url, args.sessions)
        print(f"loaded in {time.perf_counter() - started:.0f} s")
        bare_ms, ours = [], []
        for _ in range(args.repeat):
            bare_ms.append(bare(url, ids))
            ours.append(statement(url, ids))
    figures = ours[-1][3]
    best_bare = min(bare_ms)
    best = min(ours, key=lambda r: r[0])
    ratio = best[0] / best_bare
    peak_mb = max(r[1] for r in ours)
    rss_mb = max(r[2] for r in ours)
    totals = figures["totals"]
    print(
        f"statement figures: {totals['sessions']:,} sessions, gross ¥{totals['gross_fen'] / 100:,.2f}, "
        f"{len(figures['days'])} days, {len(figures['sheds'])} sheds"
    )
    print(f"{'':<28} {'best ms':>9}   runs (ms)")
    print(f"{'bare SQL GROUP BY':<28} {best_bare:>9.0f}   {' / '.join(f'{x:.0f}' for x in bare_ms)}")
    print(f"{'compute_figures()':<28} {best[0]:>9.0f}   {' / '.join(f'{r[0]:.0f}' for r in ours)}")
    print(
        f"ratio {ratio:.2f} (target ≤ {TARGET_RATIO:.0f}): {_common.verdict(ratio <= TARGET_RATIO)}; "
        f"peak memory of the process computing it {rss_mb:.0f} MB RSS (interpreter and app included; "
        f"{peak_mb:.1f} MB allocated by the computation) (target ≤ {TARGET_MB} MB): "
        f"{_common.verdict(rss_mb <= TARGET_MB)}"
    )


if __name__ == "__main__":
    main()
