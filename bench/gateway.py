"""OCPP gateway under load: 2,000 stations × 5 connectors connected at once to `flask gateway`.

The production shape on a scratch PostgreSQL database: the gateway process (`flask --app chargeshed
gateway`, OCPP adapter) and the simulated stations (bench/ocpp_stations.py: websockets with
hand-built OCPP-J frames), shared out over several processes (`--generators`, default one per 500
stations) so that no generator's own event loop is the bottleneck. Stations connect 25 a second in
all, retrying with backoff as real stations do; each boots, reports its connectors, sends
MeterValues for every connector every 60 s, staggered, and a Heartbeat at the interval it is given.
This process plays the web: once all stations are up and warmed, it starts charges through the
session service (hold reserved, start command queued, NOTIFY on commit) and notes when each
RemoteStartTransaction reached its station.

Measured over the steady window (after connecting and one warm-up minute), with the machine's load
average at its start and end (other work on the machine distorts every figure):
- the gateway's CPU (user + system, % of one core) and memory (RSS, and its peak);
- frame received → reply sent inside the gateway (the gateway logs p50/p99/max per window), and how
  late its event loop wakes (loop lag: time a frame waits before its handler starts);
- the stations' own round trip (call sent → reply received) and each generator's loop lag;
- start queued (committed) → RemoteStartTransaction received by the station, split by the gateway's
  log line of each command into: queued → NOTIFY heard, the claim transaction, queued → handed to the
  OCPP adapter (the gateway's part), and handed → read by the station (frame, socket, generator).
  All times are epoch seconds (time.time()) on the one machine.

    .venv/bin/python bench/gateway.py [--stations 2000] [--connectors 5] [--runs 3] [--measure 180]
    .venv/bin/python bench/gateway.py --stations 500 --warmup 20 --measure 60 --starts 50 --runs 1  # ~2 min
    .venv/bin/python bench/gateway.py --asyncio-debug ...   # also counts callbacks that hold the loop ≥ 100 ms
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time

import _common

TARGET_FRAME_P99_MS = 50.0
TARGET_COMMAND_P99_MS = 100.0
STATS_SECONDS = 30
RAMP_PER_SECOND = 25  # stations connecting per second, across all generator processes


def seed(url: str, instance: str, stations: int, connectors: int, starts: int) -> tuple[dict, list[int], list[int]]:
    """Chargers with their keys, one port per connector bound to it, residents with money."""
    from sqlalchemy import insert

    from chargeshed import create_app
    from chargeshed.accounts.models import ROLE_RESIDENT
    from chargeshed.accounts.services import create_user
    from chargeshed.charging.models import Tariff
    from chargeshed.charging.tariff import default_tariff
    from chargeshed.extensions import db
    from chargeshed.payments import fulfilment
    from chargeshed.payments.providers import Payment
    from chargeshed.ports import registry
    from chargeshed.ports.models import PortTelemetry
    from chargeshed.sites.models import Operator, Port, Shed, Site

    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench", "PAYMENTS": "demo", "LOG_LEVEL": "WARNING"})
    keys = {}
    with app.app_context():
        site, operator = Site(name="Bench"), Operator(name="Bench operator")
        tariff = Tariff(name="standard", rules=default_tariff().to_dict())
        db.session.add_all([site, operator, tariff])
        db.session.flush()
        rows = []
        for n in range(1, stations + 1):
            cp_id = f"BENCH-{n:05d}"
            keys[cp_id] = registry.add_charger(cp_id, connectors).key
            shed = Shed(site_id=site.id, operator_id=operator.id, tariff_id=tariff.id, name=f"Shed {n}")
            db.session.add(shed)
            db.session.flush()
            rows += [
                {
                    "shed_id": shed.id,
                    "number": c,
                    "code": f"B{n:05d}{c:02d}",
                    "label": "",
                    "hardware_target": f"ocpp:{cp_id}/{c}",
                }
                for c in range(1, connectors + 1)
            ]
        db.session.execute(insert(Port), rows)
        db.session.execute(
            insert(PortTelemetry).from_select(
                [
                    "port_id",
                    "target",
                    "scheme",
                    "device",
                    "watts",
                    "relay_on",
                    "energy_wh",
                    "session_start_wh",
                    "link_online",
                ],
                db.select(
                    Port.id,
                    Port.hardware_target,
                    db.literal("ocpp"),
                    db.func.split_part(Port.hardware_target, "/", 1),
                    0,
                    False,
                    0,
                    0,
                    False,
                ),
            )
        )
        db.session.commit()
        port_ids = list(db.session.execute(db.select(Port.id).where(Port.number == 1).order_by(Port.id)).scalars())[
            :starts
        ]
        users = []
        for n in range(starts):
            user = create_user(f"1370000{n:04d}", "bench-password", ROLE_RESIDENT)
            topup = fulfilment.create_topup(user.id, 1000, [1000], "cny", "demo")
            topup.checkout_ref = f"demo_{topup.id}"
            db.session.commit()
            fulfilment.fulfil(topup.id, Payment(topup.checkout_ref, None, 1000, "cny"))
            db.session.commit()  # fulfil works inside the caller's transaction
            users.append(user.id)
    return keys, port_ids, users


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> tuple[float, float]:
    values = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(("VmRSS", "VmHWM")):
                name, amount, _unit = line.split()
                values[name.rstrip(":")] = int(amount) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def wait_listening(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    """Until the gateway accepts connections on its OCPP port."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the gateway exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the gateway is not listening")


class Lines(threading.Thread):
    """Read a process's JSON lines into a queue (other lines are ignored)."""

    def __init__(self, stream, copy: str | None = None):
        super().__init__(daemon=True)
        self.stream, self.lines, self.copy = stream, queue.Queue(), copy

    def run(self) -> None:
        copy = open(self.copy, "w") if self.copy else None  # noqa: SIM115 (closed when the stream ends)
        for raw in self.stream:
            if copy is not None:
                copy.write(raw)
            try:
                self.lines.put(json.loads(raw))
            except ValueError:
                continue

    def wait_for(self, key: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if key in line:
                return line
        raise RuntimeError(f"no {key!r} line within {timeout} s")

    def drain(self) -> list[dict]:
        out = []
        while not self.lines.empty():
            out.append(self.lines.get_nowait())
        return out


def one_run(args, number: int) -> dict:
    from chargeshed import create_app
    from chargeshed.charging import sessions
    from chargeshed.extensions import db
    from chargeshed.sites.models import Port

    with _common.scratch_database("gateway") as url:
        ocpp_port = _common.free_port()
        instance = _common.instance_folder(
            RATELIMIT_ENABLED=False, OCPP_LISTEN=f"127.0.0.1:{ocpp_port}", OCPP_STATS_SECONDS=STATS_SECONDS
        )
        _common.migrate(url, instance)
        started = time.monotonic()
        keys, port_ids, users = seed(url, instance, args.stations, args.connectors, args.starts)
        print(f"run {number}: seeded {args.stations} stations in {time.monotonic() - started:.0f} s", flush=True)
        keys_file = os.path.join(instance, "keys.json")
        with open(keys_file, "w") as handle:
            json.dump(keys, handle)
        env = _common.env_for(url, instance, LOG_LEVEL="INFO", LOG_FORMAT="json")
        if args.asyncio_debug:  # asyncio logs every callback that holds the loop ≥ 100 ms (and runs slower)
            env["PYTHONASYNCIODEBUG"] = "1"
        gateway = subprocess.Popen(
            _common.FLASK + ["gateway"],
            env=env,
            cwd=_common.ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        copy = os.path.join(args.logs, f"gateway-run{number}.log") if args.logs else None
        gateway_lines = Lines(gateway.stderr, copy)
        gateway_lines.start()
        generators: list[subprocess.Popen] = []
        station_lines: list[Lines] = []
        try:
            wait_listening(ocpp_port, gateway)
            # The stations are shared out over several processes, so that no single generator's event
            # loop is saturated (its lag would be counted as the gateway's). Times are epoch seconds
            # (time.time()) on the one machine, comparable across processes.
            shares = [len(range(n, args.stations, args.generators)) for n in range(args.generators)]
            first = 1
            for share in shares:
                process = subprocess.Popen(
                    [
                        sys.executable,
                        os.path.join(_common.ROOT, "bench", "ocpp_stations.py"),
                        "--port",
                        str(ocpp_port),
                        "--first",
                        str(first),
                        "--stations",
                        str(share),
                        "--connectors",
                        str(args.connectors),
                        "--meter-seconds",
                        str(args.meter_seconds),
                        "--ramp",
                        str(max(1, round(RAMP_PER_SECOND / args.generators))),
                        "--keys",
                        keys_file,
                        "--stats",
                        str(STATS_SECONDS),
                    ],
                    cwd=_common.ROOT,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
                first += share
                generators.append(process)
                station_lines.append(Lines(process.stdout))
                station_lines[-1].start()
            connected_lines = [lines.wait_for("connected", 900) for lines in station_lines]
            connected = {
                "connected": sum(line["connected"] for line in connected_lines),
                "seconds": max(line["seconds"] for line in connected_lines),
                "retries": sum(line.get("retries", 0) for line in connected_lines),
            }
            time.sleep(args.warmup)
            gateway_lines.drain()
            for lines in station_lines:
                lines.drain()

            load_before = os.getloadavg()[0]
            window_start = time.monotonic()
            cpu_before = cpu_seconds(gateway.pid)
            app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench", "PAYMENTS": "demo", "LOG_LEVEL": "WARNING"})
            queued: dict[str, float] = {}
            gap = args.measure / max(1, len(users)) / 2
            with app.app_context():
                for user_id, port_id in zip(users, port_ids, strict=True):
                    port = db.session.get(Port, port_id)
                    session_id = sessions.start_session(user_id, port).id
                    db.session.commit()  # queued: NOTIFY goes out on commit
                    queued[f"S{session_id}"] = time.time()
                    db.session.remove()
                    time.sleep(gap)
            time.sleep(max(0.0, args.measure - (time.monotonic() - window_start)))
            wall = time.monotonic() - window_start
            cpu = (cpu_seconds(gateway.pid) - cpu_before) / wall * 100
            rss, peak = memory_mb(gateway.pid)
            load_after = os.getloadavg()[0]
            time.sleep(1)  # the last starts' log lines
            station_out = [line for lines in station_lines for line in lines.drain()]
            gateway_out = gateway_lines.drain()
        finally:
            for process in generators:
                process.terminate()
            for process in generators:
                process.wait(timeout=30)
            gateway.terminate()
            try:
                gateway.wait(timeout=60)
            except subprocess.TimeoutExpired:
                gateway.kill()

    arrived = {line["remote_start"]: line["at"] for line in station_out if "remote_start" in line}
    command_ms = [(arrived[ref] - at) * 1000 for ref, at in queued.items() if ref in arrived]
    windows = [line for line in gateway_out if line.get("event") == "ocpp.frames" and line.get("frames")]
    rtts = [line["stats"] for line in station_out if "stats" in line]
    # The gateway's own part of each start (its gateway.command line) and the rest (wire + generator).
    sent = {
        line["session_ref"]: line
        for line in gateway_out
        if line.get("event") == "gateway.command" and line.get("kind") == "start" and line.get("sending_at")
    }
    gateway_ms = [(sent[ref]["sending_at"] - at) * 1000 for ref, at in queued.items() if ref in sent]
    notify_ms = [
        (sent[ref]["notified_at"] - at) * 1000 for ref, at in queued.items() if sent.get(ref, {}).get("notified_at")
    ]
    claim_ms = [(line["claimed_at"] - line["claim_at"]) * 1000 for line in sent.values()]
    thread_wait_ms = [(line["claim_running_at"] - line["claim_at"]) * 1000 for line in sent.values()]
    wire_ms = [(arrived[ref] - line["sending_at"]) * 1000 for ref, line in sent.items() if ref in arrived]
    slow = [line for line in gateway_out if line.get("logger") == "asyncio" and "took" in line.get("msg", "")]

    def pct(values: list[float], p: float) -> float:
        return _common.percentile(values, p) if values else float("nan")

    def worst(lines: list[dict], key: str) -> float:
        values = [line[key] for line in lines if line.get(key) is not None]
        return max(values) if values else float("nan")

    return {
        "load_before": load_before,
        "load_after": load_after,
        "connected": connected["connected"],
        "connect_s": connected["seconds"],
        "connect_retries": connected.get("retries", 0),
        "cpu_pct": cpu,
        "rss_mb": rss,
        "peak_mb": peak,
        "frames_per_s": sum(w["frames"] for w in windows) / max(1, len(windows) * STATS_SECONDS),
        "frame_p50_ms": statistics.median(w["p50_ms"] for w in windows) if windows else float("nan"),
        "frame_p99_ms": worst(windows, "p99_ms"),
        "frame_max_ms": worst(windows, "max_ms"),
        "gateway_lag_p99_ms": worst(windows, "loop_lag_p99_ms"),
        "gateway_lag_max_ms": worst(windows, "loop_lag_max_ms"),
        "gc_full": sum(w.get("gc_full") or 0 for w in windows),
        "gc_max_ms": worst(windows, "gc_max_ms"),
        "rtt_p99_ms": worst(rtts, "p99_ms"),
        "generator_lag_p99_ms": worst(rtts, "lag_p99_ms"),
        "station_errors": sum(r["errors"] for r in rtts),
        "starts": len(queued),
        "starts_arrived": len(command_ms),
        "command_p50_ms": pct(command_ms, 50),
        "command_p99_ms": pct(command_ms, 99),
        "notify_p99_ms": pct(notify_ms, 99),
        "claim_p99_ms": pct(claim_ms, 99),
        "thread_wait_p99_ms": pct(thread_wait_ms, 99),
        "gateway_p50_ms": pct(gateway_ms, 50),
        "gateway_p99_ms": pct(gateway_ms, 99),
        "wire_p99_ms": pct(wire_ms, 99),
        "slow_callbacks": len(slow) if args.asyncio_debug else float("nan"),
    }


ROWS = [
    ("load_before", "machine load average (1 min) as the window began", "{:.1f}"),
    ("load_after", "machine load average (1 min) as it ended", "{:.1f}"),
    ("connected", "stations connected and booted", "{:.0f}"),
    ("connect_s", "time to connect and boot them (s)", "{:.0f}"),
    ("connect_retries", "connection attempts retried by stations", "{:.0f}"),
    ("cpu_pct", "gateway CPU (% of one core)", "{:.0f}"),
    ("rss_mb", "gateway RSS (MB)", "{:.0f}"),
    ("peak_mb", "gateway peak RSS (MB)", "{:.0f}"),
    ("frames_per_s", "calls answered per second", "{:.0f}"),
    ("frame_p50_ms", "frame received → reply sent, p50 (ms)", "{:.1f}"),
    ("frame_p99_ms", "frame received → reply sent, p99, worst window (ms)", "{:.1f}"),
    ("frame_max_ms", "frame received → reply sent, max (ms)", "{:.0f}"),
    ("gateway_lag_p99_ms", "gateway event-loop lag, p99, worst window (ms)", "{:.1f}"),
    ("gateway_lag_max_ms", "gateway event-loop lag, max (ms)", "{:.0f}"),
    ("gc_full", "gateway: full garbage collections in the window", "{:.0f}"),
    ("gc_max_ms", "gateway: longest full garbage collection (ms)", "{:.0f}"),
    ("rtt_p99_ms", "station round trip p99, worst window and generator (ms)", "{:.1f}"),
    ("generator_lag_p99_ms", "generator event-loop lag, p99, worst window and generator (ms)", "{:.1f}"),
    ("station_errors", "CallErrors received by stations", "{:.0f}"),
    ("starts_arrived", "RemoteStarts arrived (of starts queued)", "{:.0f}"),
    ("command_p50_ms", "start queued → RemoteStart at the station, p50 (ms)", "{:.1f}"),
    ("command_p99_ms", "start queued → RemoteStart at the station, p99 (ms)", "{:.1f}"),
    ("notify_p99_ms", "  of which queued → NOTIFY heard by the gateway, p99 (ms)", "{:.1f}"),
    ("claim_p99_ms", "  the claim (waiting for a database thread, then the transaction), p99 (ms)", "{:.1f}"),
    ("thread_wait_p99_ms", "  of which waiting for a database thread, p99 (ms)", "{:.1f}"),
    ("gateway_p50_ms", "  queued → handed to the OCPP adapter (gateway side), p50 (ms)", "{:.1f}"),
    ("gateway_p99_ms", "  queued → handed to the OCPP adapter (gateway side), p99 (ms)", "{:.1f}"),
    ("wire_p99_ms", "  handed to the adapter → read by the station (frame, socket, generator), p99 (ms)", "{:.1f}"),
    ("slow_callbacks", "callbacks holding the gateway's loop ≥ 100 ms (--asyncio-debug only)", "{:.0f}"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=2000)
    parser.add_argument("--connectors", type=int, default=5)
    parser.add_argument("--meter-seconds", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=60, help="seconds after all stations are up")
    parser.add_argument("--measure", type=float, default=180, help="seconds in the measured window")
    parser.add_argument("--starts", type=int, default=100, help="charges started in the window")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--generators", type=int, default=0, help="station processes (default: one per 500)")
    parser.add_argument("--asyncio-debug", action="store_true", help="log callbacks blocking the gateway's loop")
    parser.add_argument("--logs", default="", help="a folder to keep the gateway's log in")
    args = parser.parse_args()
    args.generators = args.generators or max(1, -(-args.stations // 500))
    os.environ.setdefault("CHARGESHED_ENV", "test")  # this process seeds and starts charges (memory:// limits)
    print(
        f"OCPP gateway: {args.stations} stations × {args.connectors} connectors, MeterValues every "
        f"{args.meter_seconds:.0f} s, {args.starts} starts, {args.runs} runs, {args.generators} generator "
        f"processes — {_common.machine()}, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    results = []
    for number in range(1, args.runs + 1):
        results.append(one_run(args, number))
        print(json.dumps({"run": number, **{k: round(v, 2) for k, v in results[-1].items()}}), flush=True)
    print()
    print(f"| | {' | '.join(f'run {n}' for n in range(1, len(results) + 1))} | median | spread |")
    print(f"|---|{'---:|' * (len(results) + 2)}")
    for key, label, fmt in ROWS:
        values = [r[key] for r in results]
        median = statistics.median(values)
        spread = f"{fmt.format(min(values))}–{fmt.format(max(values))}"
        print(f"| {label} | {' | '.join(fmt.format(v) for v in values)} | {fmt.format(median)} | {spread} |")
    frame = statistics.median(r["frame_p99_ms"] for r in results)
    command = statistics.median(r["command_p99_ms"] for r in results)
    print()
    print(
        f"frame → reply p99 (median of runs) {frame:.1f} ms: {_common.verdict(frame <= TARGET_FRAME_P99_MS)} "
        f"(≤ {TARGET_FRAME_P99_MS:.0f} ms)"
    )
    print(
        f"start queued → RemoteStart p99 (median of runs) {command:.1f} ms: "
        f"{_common.verdict(command <= TARGET_COMMAND_P99_MS)} (≤ {TARGET_COMMAND_P99_MS:.0f} ms)"
    )
    inside = statistics.median(r["gateway_p99_ms"] for r in results)
    lag = statistics.median(r["generator_lag_p99_ms"] for r in results)
    print(
        f"  of which the gateway's part (queued → handed to the adapter) p99 {inside:.1f} ms; "
        f"generators' own loop lag p99 {lag:.1f} ms (a large one means the generators, not the gateway, "
        f"were short of CPU); load average {min(r['load_before'] for r in results):.1f}–"
        f"{max(r['load_after'] for r in results):.1f} on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
