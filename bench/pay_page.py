"""The QR pay page /p/<code> under gunicorn (2 workers), next to a one-query reference page.

Targets: ≥ 0.8 × the reference's requests per second, p99 ≤ 50 ms, at 16 connections (wrk).
Both apps run with the same gunicorn settings (chargeshed/gunicorn_conf.py: gthread, 4 threads
per worker) on the same migrated PostgreSQL database holding the demo compound. ChargeShed is
measured as a first-time scanner (anonymous) and as a signed-in resident (the usual case: the
wallet is shown). The reference also serves a signed-in variant (`/signed/p/<code>`: the bare
stack's session, Flask-Login user load, balance and CSRF token), to tell what signing in costs any
Flask page from what ChargeShed adds. The configurations run in rounds, interleaved; each round's
ratio is taken against the reference of the same round, and the median and the spread
(lowest–highest) over the rounds are shown; the signed-in page is also compared with the
signed-in reference. Also printed: the page's bytes all in, as a phone receives them (the HTML and
every stylesheet and script it links, with Accept-Encoding: br, gzip, headers included).

    .venv/bin/python bench/pay_page.py [--seconds 15] [--connections 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import http.client
import re
import statistics
import subprocess
import sys
import time
from urllib.parse import urlencode

import _common

TARGET_RATIO, TARGET_P99_MS = 0.8, 50.0


def sign_in(base: str, login: str, password: str) -> str:
    """Log in through the real form; return the Cookie header a signed-in phone would send."""
    host, port = base.removeprefix("http://").split(":")
    cookies: dict[str, str] = {}

    def call(method: str, path: str, body: str | None = None) -> tuple[int, str]:
        connection = http.client.HTTPConnection(host, int(port))
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            cookies[name] = rest.split(";", 1)[0]
        text = response.read().decode()
        connection.close()
        return response.status, text

    _status, page = call("GET", "/login")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    status, _ = call(
        "POST",
        "/login",
        urlencode({"csrf_token": token, "login": login, "password": password, "remember": "y"}),
    )
    assert status == 302, status
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


def reference_cookie(base: str, user_id: int) -> str:
    """Sign in to the reference app's signed-in variant; the Cookie header it set."""
    connection = http.client.HTTPConnection(*base.removeprefix("http://").split(":"))
    connection.request("GET", f"/signed/login/{user_id}")
    response = connection.getresponse()
    response.read()
    header = response.getheader("Set-Cookie") or ""
    connection.close()
    return header.split(";", 1)[0]


def bytes_all_in(base: str, path: str, headers: dict) -> tuple[int, list[str]]:
    """Bytes on the wire for the page and the assets it links (compressed as offered), with headers."""
    host, port = base.removeprefix("http://").split(":")

    def fetch(url: str) -> tuple[int, str, str]:
        connection = http.client.HTTPConnection(host, int(port))
        connection.request("GET", url, headers={"Accept-Encoding": "br, gzip", **headers})
        response = connection.getresponse()
        body = response.read()
        head = sum(len(k) + len(v) + 4 for k, v in response.getheaders()) + 17
        connection.close()
        return head + len(body), response.getheader("Content-Encoding") or "identity", body.decode("latin-1")

    total, html_encoding, html = fetch(path)
    parts = [f"page {total} B ({html_encoding})"]
    for asset in re.findall(r'(?:href|src)="(/static/[^"]+)"', html):
        size, encoding, _ = fetch(asset)
        total += size
        parts.append(f"{asset.rsplit('/', 1)[-1]} {size} B ({encoding})")
    return total, parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not _common.have_wrk():
        sys.exit("wrk is needed (Debian: apt-get install wrk)")
    print(
        f"Pay page /p/<code>, gunicorn 2 workers × 4 threads, wrk {args.connections} connections, "
        f"{args.seconds} s per run — {_common.machine()}"
    )
    with _common.scratch_database("paypage") as url:
        instance = _common.instance_folder(RATELIMIT_ENABLED=False)
        _common.migrate(url, instance)
        subprocess.run(
            _common.FLASK + ["demo", "--days", "7"],
            env=_common.env_for(url, instance),
            cwd=_common.ROOT,
            check=True,
            capture_output=True,
        )
        listing = subprocess.run(
            _common.FLASK + ["ports"],
            env=_common.env_for(url, instance),
            cwd=_common.ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        code = listing.split()[0]
        ours_env = _common.env_for(url, instance, LOG_LEVEL="INFO")
        ref_env = _common.env_for(url, instance, PYTHONPATH=f"{_common.ROOT}/bench:{_common.ROOT}")
        runs: dict[str, list[dict]] = {
            "reference (1 query)": [],
            "ChargeShed, anonymous": [],
            "reference, signed in": [],
            "ChargeShed, signed in": [],
        }
        with (
            _common.gunicorn("chargeshed:create_app()", ours_env) as ours,
            _common.gunicorn("reference_app:create_app()", ref_env) as ref,
        ):
            cookie = sign_in(ours.base, "13800000001", "demo1234")
            resident_id = user_id_of(url, "13800000001")
            targets = {
                "reference (1 query)": (ref.base, {}),
                "ChargeShed, anonymous": (ours.base, {}),
                "reference, signed in": (ref.base, {"Cookie": reference_cookie(ref.base, resident_id)}),
                "ChargeShed, signed in": (ours.base, {"Cookie": cookie}),
            }
            paths = {name: f"/signed/p/{code}" if name == "reference, signed in" else f"/p/{code}" for name in targets}
            for name, marker in (
                ("ChargeShed, signed in", 'data-testid="start"'),
                ("reference, signed in", "csrf_token"),
            ):
                base, headers = targets[name]
                page = http.client.HTTPConnection(*base.removeprefix("http://").split(":"))
                page.request("GET", paths[name], headers=headers)
                assert marker in page.getresponse().read().decode(), f"{name}: not signed in"
            for name, (base, headers) in targets.items():  # warm up both apps
                _common.wrk(f"{base}{paths[name]}", args.connections, 3, headers=headers)
            weights = {
                name: bytes_all_in(base, f"/p/{code}", headers)
                for name, (base, headers) in targets.items()
                if not name.startswith("reference")
            }
            for _round in range(args.rounds):
                for name, (base, headers) in targets.items():
                    runs[name].append(
                        _common.wrk(f"{base}{paths[name]}", args.connections, args.seconds, headers=headers)
                    )
                    time.sleep(1)
    print(f"{'':<24} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>7}  {'ratio spread':>12}   runs (req/s)")
    reference_runs = runs["reference (1 query)"]
    for name, results in runs.items():
        ratios = [r["rps"] / ref["rps"] for r, ref in zip(results, reference_runs, strict=True)]
        ratio = statistics.median(ratios)
        rps = statistics.median(r["rps"] for r in results)
        p50 = statistics.median(r["p50"] for r in results)
        p99 = statistics.median(r["p99"] for r in results)
        note = (
            ""
            if name.startswith("reference")
            else f"  ratio {_common.verdict(ratio >= TARGET_RATIO)}, p99 {_common.verdict(p99 <= TARGET_P99_MS)}"
        )
        each = " / ".join(f"{x['rps']:.0f}" for x in results)
        errors = sum(r["errors"] for r in results)
        print(
            f"{name:<24} {rps:>8.0f} {p50:>8.1f} {p99:>8.1f} {ratio:>7.2f}  "
            f"{min(ratios):>5.2f}–{max(ratios):<6.2f}   {each}{note}" + (f"  ({errors} non-2xx)" if errors else "")
        )
    like_for_like = [
        ours["rps"] / ref["rps"]
        for ours, ref in zip(runs["ChargeShed, signed in"], runs["reference, signed in"], strict=True)
    ]
    print(
        f"ChargeShed signed in against the signed-in reference: {statistics.median(like_for_like):.2f} × "
        f"({min(like_for_like):.2f}–{max(like_for_like):.2f})"
    )
    print(
        "median over the rounds; p99 per round: "
        + "; ".join(
            f"{name.split(', ')[-1]} " + " / ".join(f"{r['p99']:.0f}" for r in results)
            for name, results in runs.items()
        )
    )
    for name, (total, parts) in weights.items():
        print(f"bytes all in, {name}: {total / 1024:.1f} KiB ({total} B, target 25 KB) = " + " + ".join(parts))


def user_id_of(database_url: str, login: str) -> int:
    """The id of the user with this login."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as connection:
        found = connection.execute(text('SELECT id FROM "user" WHERE login = :login'), {"login": login}).scalar_one()
    engine.dispose()
    return found


if __name__ == "__main__":
    main()
