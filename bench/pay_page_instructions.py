"""The QR pay page /p/<code> in CPU instructions per request, counted by valgrind: repeatable on a busy machine.

    .venv/bin/python bench/pay_page_instructions.py [--requests 200] [--case NAME]   # needs valgrind

Seconds on a shared 2-core machine swing by a third from one round to the next; the instructions a
request executes do not. Each case of profile_pay_page.py (the same app, built as gunicorn builds
it, on the demo compound in a scratch PostgreSQL database of its own) runs in a child process
under `valgrind --tool=callgrind`, counting only while the measured requests run (the loop runs
inside functools.reduce, the one function counting is switched on for). Only this process's
instructions count: PostgreSQL's own work, the network and the kernel do not. Printed: instructions
per request and the ratio against the one-query reference (its instructions / the case's).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import _common

CASES = (
    "reference (1 query)",
    "reference, signed in",
    "anonymous, free port",
    "anonymous, through Flask",
    "signed in, free port",
    "signed in, busy port",
)


def child(case: str, url: str, requests: int) -> None:
    """In the child, under valgrind: warm the case up, then make its measured requests inside reduce."""
    from profile_pay_page import build_cases

    call = build_cases(url, tempfile.mkdtemp(prefix="chargeshed-instructions-"))[case]
    real_stderr = sys.stderr
    with open(os.devnull, "w") as devnull:
        sys.stderr = devnull
        try:
            for _ in range(50):
                status, _body = call()
            assert status.startswith("200"), (case, status)
            functools.reduce(lambda count, _: count + 1 + (call() is None), range(requests), 0)
        finally:
            sys.stderr = real_stderr


def count(case: str, requests: int) -> float:
    """Instructions per request of `case`, in a child process under callgrind on its own database."""
    with _common.scratch_database("instructions") as url, tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--collect-atstart=no",
                "--toggle-collect=functools_reduce",
                f"--callgrind-out-file={folder}/callgrind.out",
                sys.executable,
                os.path.abspath(__file__),
                "--child",
                case,
                "--database-url",
                url,
                "--requests",
                str(requests),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    collected = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or collected is None or int(collected.group(1)) == 0:
        raise SystemExit(f"{case}: valgrind run failed\n{done.stderr[-2000:]}")
    return int(collected.group(1)) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--case", action="append", help="only these cases (repeatable)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.database_url, args.requests)
        return
    cases = [name for name in CASES if not args.case or any(c in name for c in args.case)]
    if "reference (1 query)" not in cases:
        cases.insert(0, "reference (1 query)")
    print(
        f"Pay page, in process under callgrind, {args.requests} requests per case — {_common.machine()}\n"
        "instructions per request (this process only); ratio: the reference's / the case's"
    )
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        counts = dict(zip(cases, pool.map(lambda case: count(case, args.requests), cases), strict=True))
    reference = counts["reference (1 query)"]
    for name, each in counts.items():
        print(f"  {name:<26} {each / 1e6:6.2f} M  {reference / each:.2f} × reference")


if __name__ == "__main__":
    main()
