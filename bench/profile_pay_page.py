"""Where the QR pay page /p/<code> spends its CPU, in process: µs per request and cProfile's top entries.

    .venv/bin/python bench/profile_pay_page.py [--requests 2000] [--database-url URL] [--top 25] [--case NAME]

The app is built as gunicorn builds it (not TESTING: logging, static files and CSRF as in production,
log lines written to /dev/null) on the demo compound, in SQLite in a temporary folder unless
--database-url names a PostgreSQL database (its tables are dropped and created again). One of its
ports is made busy (a live charge), so the page lists the nearest free ports, and the site's
occupancy version is recorded (as the worker's supervisor tick does). Each case calls the
WSGI app directly with a prepared environ (no HTTP, no test client), first timed (process CPU per
request, median of 5 batches), then under cProfile. Cases: anonymous on a free port, anonymous on
the busy port, anonymous with a cookie that signs nobody in (served by Flask itself, not by the
kept copy in front of it: Flask's own floor for any page), signed in on a free port (the wallet is
shown), signed in on the busy port.
The reference (bench/reference_app.py: one query, one small template) is timed the same way, and
so is its signed-in variant (the bare stack's session, Flask-Login user load, balance, CSRF token).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import re
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench")]
PHONE = "Mozilla/5.0 (Linux; Android 14) Mobile"


def build_app(database_url: str, instance: str):
    """The app on `database_url` with the demo compound and one busy port; returns (app, codes)."""
    os.environ.update(CHARGESHED_ENV="test", CHARGESHED_INSTANCE=instance)
    from sqlalchemy import select

    from chargeshed import create_app
    from chargeshed.accounts.models import User
    from chargeshed.charging.models import CHARGING, ChargeSession
    from chargeshed.charging.occupancy import refresh_versions
    from chargeshed.demo import load_demo
    from chargeshed.extensions import db
    from chargeshed.sites.models import Port
    from chargeshed.timeutil import utcnow

    app = create_app(
        {
            "DATABASE_URL": database_url,
            "SECRET_KEY": "bench-secret",
            "RATELIMIT_ENABLED": False,
            "LOG_LEVEL": "INFO",
            "STATIC_BUILD_DIR": os.path.join(instance, "static"),
        }
    )
    with app.app_context():
        db.drop_all()
        db.create_all()
        load_demo(history_days=2, sessions_per_day=5)
        ports = db.session.execute(select(Port).order_by(Port.shed_id, Port.number)).scalars().all()
        free, busy = ports[0], ports[1]
        db.session.add(
            ChargeSession(user_id=2, port_id=busy.id, shed_id=busy.shed_id, rules={}, state=CHARGING, hold_fen=500)
        )
        refresh_versions(utcnow())  # as the worker's supervisor tick does every few seconds
        db.session.commit()
        resident = db.session.execute(select(User.id).where(User.login == "13800000001")).scalar_one()
        return app, {"free": free.code, "busy": busy.code, "resident": resident}


def sign_in(app) -> str:
    """Log in the demo resident through the real form; the Cookie header a signed-in phone sends."""
    client = app.test_client()
    client.environ_base.update(HTTP_USER_AGENT=PHONE, REMOTE_ADDR="127.0.0.1")  # session protection compares both
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    response = client.post(
        "/login", data={"csrf_token": token, "login": "13800000001", "password": "demo1234", "remember": "y"}
    )
    assert response.status_code == 302, response.status_code
    return "; ".join(f"{c.key}={c.value}" for c in client._cookies.values())


def reference_sign_in(reference, user_id: int) -> str:
    """Sign in to the reference app's signed-in variant; the Cookie header it set."""
    client = reference.test_client()
    assert client.get(f"/signed/login/{user_id}").status_code == 200
    return "; ".join(f"{c.key}={c.value}" for c in client._cookies.values())


def caller(app, path: str, headers: dict[str, str]):
    """A function making one request to `app` (its whole WSGI stack) and returning the status and body."""
    from werkzeug.test import EnvironBuilder

    environ = EnvironBuilder(
        path=path, headers={"User-Agent": PHONE, **headers}, environ_base={"REMOTE_ADDR": "127.0.0.1"}
    ).get_environ()
    status = []

    def start_response(code, _headers, _exc=None):
        status.append(code)

    def call():
        status.clear()
        result = app(dict(environ), start_response)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        return status[0], body

    return call


def cpu_us(calls: dict, requests: int, rounds: int = 5) -> dict[str, list[float]]:
    """Process CPU µs per request of each case, per round; the cases take turns within a round."""
    batch = max(1, requests // rounds)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            started = time.process_time()
            for _ in range(batch):
                call()
            times[name].append((time.process_time() - started) / batch * 1e6)
    return times


def profile(call, requests: int, top: int) -> str:
    """cProfile's top entries (cumulative, then own time) over `requests` calls."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(requests):
        call()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    out.write(f"{stats.total_calls / requests:.0f} function calls per request\n")
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def build_cases(url: str, instance: str) -> dict:
    """Each case's name and a function making its request: ChargeShed's cases and the reference's."""
    real_stderr = sys.stderr
    with open(os.devnull, "w") as devnull:
        sys.stderr = devnull  # log lines (the demo's, then each request's) go nowhere, as to an unread pipe
        try:
            app, codes = build_app(url, instance)
            cookie = sign_in(app)
        finally:
            sys.stderr = real_stderr
    os.environ["DATABASE_URL"] = url
    import reference_app

    reference = reference_app.create_app()
    return {
        "reference (1 query)": caller(reference, f"/p/{codes['free']}", {}),
        "reference, signed in": caller(
            reference, f"/signed/p/{codes['free']}", {"Cookie": reference_sign_in(reference, codes["resident"])}
        ),
        "anonymous, free port": caller(app, f"/p/{codes['free']}", {}),
        "anonymous, busy port": caller(app, f"/p/{codes['busy']}", {}),
        # A cookie that signs nobody in (say, an analytics one) sends the page through Flask itself.
        "anonymous, through Flask": caller(app, f"/p/{codes['free']}", {"Cookie": "seen=1"}),
        "signed in, free port": caller(app, f"/p/{codes['free']}", {"Cookie": cookie}),
        "signed in, busy port": caller(app, f"/p/{codes['busy']}", {"Cookie": cookie}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--database-url", help="a PostgreSQL database to use (its tables are recreated)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--case", action="append", help="only these cases (repeatable)")
    parser.add_argument("--no-profile", action="store_true", help="timings only")
    args = parser.parse_args()
    instance = tempfile.mkdtemp(prefix="chargeshed-profile-")
    url = args.database_url or f"sqlite:///{instance}/pay.sqlite3"
    real_stderr = sys.stderr
    cases = build_cases(url, instance)
    if args.case:
        cases = {name: call for name, call in cases.items() if any(c in name for c in args.case)}
    engine = url.split(":", 1)[0]
    print(
        f"Pay page, in process, {engine}, {args.requests} requests per case, process CPU µs per request "
        "(median of 5 rounds, cases in turn; ratio: the reference's µs / the case's, median and spread)"
    )
    with open(os.devnull, "w") as devnull:
        sys.stderr = devnull
        try:
            sizes = {}
            for name, call in cases.items():
                status, body = call()
                assert status.startswith("200"), (name, status)
                if name.startswith("signed in"):
                    assert b'href="/wallet"' in body, "not signed in"
                if name == "reference, signed in":
                    assert b"csrf_token" in body, "reference not signed in"
                for _ in range(50):
                    call()
                sizes[name] = len(body)
            times = cpu_us(cases, args.requests)
            profiles = {
                name: profile(call, args.requests, args.top) for name, call in cases.items() if not args.no_profile
            }
        finally:
            sys.stderr = real_stderr
    reference_us = times.get("reference (1 query)")
    for name, each in times.items():
        ratio = ""
        if reference_us:
            ratios = [r / us for r, us in zip(reference_us, each, strict=True)]
            ratio = f"  {statistics.median(ratios):.2f} × reference ({min(ratios):.2f}–{max(ratios):.2f})"
        print(f"  {name:<24} {statistics.median(each):>7.0f} µs  {sizes[name]:>6} B{ratio}")
    signed_reference = times.get("reference, signed in")
    for name in (n for n in times if n.startswith("signed in") and signed_reference):
        ratios = [r / us for r, us in zip(signed_reference, times[name], strict=True)]
        print(
            f"  {name} against the signed-in reference: {statistics.median(ratios):.2f} × "
            f"({min(ratios):.2f}–{max(ratios):.2f})"
        )
    for name, text in profiles.items():
        print(f"\n===== {name} =====\n{text}")


if __name__ == "__main__":
    main()
