"""The QR pay page /p/<code> under gunicorn (2 workers), next to a one-query reference page.

Targets: ≥ 0.8 × the reference's requests per second, p99 ≤ 50 ms, at 16 connections (wrk).
Both apps run with the same gunicorn settings (chargeshed/gunicorn_conf.py: gthread, 4 threads
per worker) on the same migrated PostgreSQL database holding the demo compound. ChargeShed is
measured as a first-time scanner (anonymous) and as a signed-in resident (the usual case: the
wallet is shown). Each configuration runs twice, interleaved; the better run is shown.

    .venv/bin/python bench/pay_page.py [--seconds 15] [--connections 16]
"""

from __future__ import annotations

import argparse
import http.client
import re
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
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
            "ChargeShed, signed in": [],
        }
        with (
            _common.gunicorn("chargeshed:create_app()", ours_env) as ours,
            _common.gunicorn("reference_app:create_app()", ref_env) as ref,
        ):
            cookie = sign_in(ours.base, "13800000001", "demo1234")
            targets = {
                "reference (1 query)": (ref.base, {}),
                "ChargeShed, anonymous": (ours.base, {}),
                "ChargeShed, signed in": (ours.base, {"Cookie": cookie}),
            }
            page = http.client.HTTPConnection(*ours.base.removeprefix("http://").split(":"))
            page.request("GET", f"/p/{code}", headers={"Cookie": cookie})
            assert 'data-testid="start"' in page.getresponse().read().decode(), "not signed in"
            for base, headers in targets.values():  # warm up both apps
                _common.wrk(f"{base}/p/{code}", args.connections, 3, headers=headers)
            for _round in range(2):
                for name, (base, headers) in targets.items():
                    runs[name].append(
                        _common.wrk(f"{base}/p/{code}", args.connections, args.seconds, headers=headers)
                    )
                    time.sleep(1)
    best = {name: max(results, key=lambda r: r["rps"]) for name, results in runs.items()}
    reference = best["reference (1 query)"]["rps"]
    print(f"{'':<24} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>7}   runs (req/s)")
    for name, r in best.items():
        ratio = r["rps"] / reference
        note = (
            ""
            if name.startswith("reference")
            else (
                f"  ratio {_common.verdict(ratio >= TARGET_RATIO)}, "
                f"p99 {_common.verdict(r['p99'] <= TARGET_P99_MS)}"
            )
        )
        each = " / ".join(f"{x['rps']:.0f}" for x in runs[name])
        print(
            f"{name:<24} {r['rps']:>8.0f} {r['p50']:>8.1f} {r['p99']:>8.1f} {ratio:>7.2f}   {each}{note}"
            + (f"  ({r['errors']} non-2xx)" if r["errors"] else "")
        )


if __name__ == "__main__":
    main()
