"""Shared by the benchmark scripts: a scratch PostgreSQL database, servers, wrk, printing.

Benchmarks print figures; they never pass or fail. Each makes its own database on the
PostgreSQL server at BENCH_PG_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres)
and drops it afterwards.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
PG_SERVER = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
FLASK = [sys.executable, "-m", "flask", "--app", "chargeshed"]


def machine() -> str:
    """One line describing where the figures were measured."""
    cores = os.cpu_count()
    try:
        with open("/proc/meminfo") as handle:
            mem_kb = int(next(line for line in handle if line.startswith("MemTotal")).split()[1])
        memory = f"{mem_kb / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration):
        memory = "?"
    with contextlib.suppress(Exception), create_engine(PG_SERVER).connect() as conn:
        pg = conn.execute(text("SHOW server_version")).scalar_one()
        return f"{cores} cores, {memory}, Python {platform.python_version()}, PostgreSQL {pg}"
    return f"{cores} cores, {memory}, Python {platform.python_version()}"


@contextlib.contextmanager
def scratch_database(prefix: str):
    """A fresh PostgreSQL database (URL), dropped on exit."""
    name = f"bench_{prefix}_{secrets.token_hex(3)}"
    admin = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_SERVER).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def instance_folder(**settings) -> str:
    """A temporary instance folder whose config.py holds `settings`."""
    folder = tempfile.mkdtemp(prefix="chargeshed-bench-")
    with open(os.path.join(folder, "config.py"), "w") as handle:
        for key, value in settings.items():
            handle.write(f"{key} = {value!r}\n")
    return folder


def env_for(database_url: str, instance: str, **extra) -> dict[str, str]:
    """Process environment: the database, the instance folder, quiet logs."""
    from chargeshed.config import ENV_KEYS

    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS and not k.startswith("FLASK_")}
    env.update(
        DATABASE_URL=database_url,
        CHARGESHED_INSTANCE=instance,
        SECRET_KEY="bench-secret",
        CHARGESHED_ENV="test",
        LOG_LEVEL="WARNING",
        PYTHONPATH=ROOT,
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def migrate(database_url: str, instance: str) -> None:
    """The production schema: `flask db upgrade heads`."""
    subprocess.run(
        FLASK + ["db", "upgrade", "heads"],
        env=env_for(database_url, instance),
        cwd=ROOT,
        check=True,
        capture_output=True,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A process serving HTTP on a local port; waits until `probe` answers; SIGTERM on exit."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int, probe: str = "/healthz"):
        self.argv, self.env, self.port, self.probe = argv, env, port, probe
        self.log = tempfile.NamedTemporaryFile(prefix="bench-server-", suffix=".log", delete=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited; see {self.log.name}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.base + self.probe, timeout=2) as response:
                    if response.status < 500:
                        return self
            time.sleep(0.2)
        raise RuntimeError(f"server did not answer; see {self.log.name}")

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def gunicorn(app_spec: str, env: dict[str, str], workers: int = 2, threads: int = 4) -> Server:
    """gunicorn with the production settings file, `workers` processes."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:chargeshed.gunicorn_conf",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        app_spec,
    ]
    return Server(argv, env, port)


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def wrk(url: str, connections: int = 16, seconds: int = 15, threads: int = 2, headers: dict | None = None) -> dict:
    """Run wrk and return req/s and latency percentiles (ms)."""
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency"]
    for key, value in (headers or {}).items():
        argv += ["-H", f"{key}: {value}"]
    output = subprocess.run(argv + [url], capture_output=True, text=True, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}
    for pct in ("50", "75", "90", "99"):
        match = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\b", output, re.M)
        value, unit = float(match.group(1)), match.group(2)
        result[f"p{pct}"] = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result["errors"] = int(errors.group(1)) if errors else 0
    result["requests"] = int(re.search(r"(\d+) requests in", output).group(1))
    return result


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(pct / 100 * len(ordered) + 0.5)) - 1))]


def summary(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 50):.1f} ms, p99 {percentile(values, 99):.1f} ms, "
        f"max {max(values):.1f} ms, mean {statistics.fmean(values):.1f} ms (n={len(values)})"
    )


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"
