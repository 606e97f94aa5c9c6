"""Simulated OCPP 1.6J charging stations for bench/gateway.py: many stations in one asyncio process
(bench/gateway.py runs several of these, each with its share: `--first`, `--stations`).

Each station connects with basic auth, boots, answers ChangeConfiguration, reports the status of
every connector, then sends MeterValues for each connector every `--meter-seconds` (staggered) and
a Heartbeat at the interval the central system gave it. A RemoteStartTransaction is accepted and
followed by StatusNotification Charging and StartTransaction, as a real station does; its arrival
time is printed as a JSON line (`{"remote_start": idTag, "at": epoch seconds}`) for the benchmark;
with `--stats N`, the round trips and this process's own event-loop lag every N seconds.
Frames are built by hand (no schema validation) to keep the load generator light.

    python bench/ocpp_stations.py --port 9000 --stations 2000 --connectors 5 --keys keys.json
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import sys
import time
from datetime import UTC, datetime

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def emit(**line) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


class SimStation:
    """One simulated station on one websocket."""

    ids = itertools.count(1)
    rtts: list[float] = []
    errors = 0
    retries = 0

    def __init__(self, cp_id: str, connectors: int, meter_seconds: float):
        self.cp_id = cp_id
        self.connectors = connectors
        self.meter_seconds = meter_seconds
        self.heartbeat = 300
        self.waiting: dict[str, asyncio.Future] = {}
        self.meter = {c: random.randint(1000, 900000) for c in range(1, connectors + 1)}
        self.watts = {c: 0 for c in range(1, connectors + 1)}
        self.transaction: dict[int, int] = {}
        self.ws = None

    async def call(self, action: str, payload: dict) -> dict:
        unique = str(next(self.ids))
        future = asyncio.get_running_loop().create_future()
        self.waiting[unique] = future
        sent = time.perf_counter()
        await self.ws.send(json.dumps([2, unique, action, payload]))
        result = await asyncio.wait_for(future, 60)
        SimStation.rtts.append(time.perf_counter() - sent)
        return result

    async def reader(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            if frame[0] == 2:
                await self.answer(frame)
            elif frame[0] in (3, 4):
                future = self.waiting.pop(frame[1], None)
                if frame[0] == 4:
                    SimStation.errors += 1
                if future is not None and not future.done():
                    future.set_result(frame[2] if frame[0] == 3 else {"error": frame[2]})

    async def answer(self, frame: list) -> None:
        _, unique, action, payload = frame
        if action == "RemoteStartTransaction":
            emit(remote_start=payload.get("idTag"), at=time.time())
            asyncio.get_running_loop().create_task(self.start(payload.get("connectorId") or 1, payload["idTag"]))
        elif action == "RemoteStopTransaction":
            asyncio.get_running_loop().create_task(self.stop(payload["transactionId"]))
        status = {"TriggerMessage": "Accepted"}.get(action, "Accepted")
        await self.ws.send(json.dumps([3, unique, {"status": status}]))

    async def start(self, connector: int, id_tag: str) -> None:
        await self.call(
            "StatusNotification",
            {"connectorId": connector, "errorCode": "NoError", "status": "Charging", "timestamp": stamp()},
        )
        result = await self.call(
            "StartTransaction",
            {"connectorId": connector, "idTag": id_tag, "meterStart": self.meter[connector], "timestamp": stamp()},
        )
        if "transactionId" in result:
            self.transaction[connector] = result["transactionId"]
            self.watts[connector] = random.randint(150, 300)

    async def stop(self, transaction_id: int) -> None:
        for connector, running in list(self.transaction.items()):
            if running == transaction_id:
                del self.transaction[connector]
                self.watts[connector] = 0
                await self.call(
                    "StopTransaction",
                    {
                        "transactionId": transaction_id,
                        "meterStop": self.meter[connector],
                        "timestamp": stamp(),
                        "reason": "Remote",
                    },
                )
                await self.call(
                    "StatusNotification",
                    {"connectorId": connector, "errorCode": "NoError", "status": "Available", "timestamp": stamp()},
                )

    async def meter_loop(self, connector: int) -> None:
        await asyncio.sleep(random.uniform(0, self.meter_seconds))
        while True:
            self.meter[connector] += int(self.watts[connector] * self.meter_seconds // 3600)
            payload = {
                "connectorId": connector,
                "meterValue": [
                    {
                        "timestamp": stamp(),
                        "sampledValue": [
                            {
                                "value": str(self.meter[connector]),
                                "measurand": "Energy.Active.Import.Register",
                                "unit": "Wh",
                                "context": "Sample.Periodic",
                            },
                            {"value": str(self.watts[connector]), "measurand": "Power.Active.Import", "unit": "W"},
                        ],
                    }
                ],
            }
            if connector in self.transaction:
                payload["transactionId"] = self.transaction[connector]
            await self.call("MeterValues", payload)
            await asyncio.sleep(self.meter_seconds)

    async def heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat * random.uniform(0.9, 1.0))
            await self.call("Heartbeat", {})

    async def run(self, url: str, connected: asyncio.Event | None = None) -> None:
        delay = 5.0
        while True:  # as real stations do: retry with backoff until the central system answers
            try:
                self.ws = await connect(
                    url, subprotocols=["ocpp1.6"], open_timeout=60, ping_interval=None, max_queue=64
                )
                break
            except (OSError, TimeoutError, InvalidHandshake):
                SimStation.retries += 1
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 60)
        reader = asyncio.get_running_loop().create_task(self.reader())
        booted = await self.call("BootNotification", {"chargePointVendor": "Bench", "chargePointModel": "Sim5"})
        self.heartbeat = int(booted.get("interval") or 300)
        for connector in range(0, self.connectors + 1):
            await self.call(
                "StatusNotification",
                {"connectorId": connector, "errorCode": "NoError", "status": "Available", "timestamp": stamp()},
            )
        if connected is not None:
            connected.set()
        tasks = [asyncio.get_running_loop().create_task(self.meter_loop(c)) for c in range(1, self.connectors + 1)]
        tasks.append(asyncio.get_running_loop().create_task(self.heartbeat_loop()))
        await reader
        for task in tasks:
            task.cancel()


LAGS: list[float] = []


async def probe_lag() -> None:
    """How late this process's event loop wakes a sleeper (a saturated generator delays what it reads)."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + 0.05
        await asyncio.sleep(0.05)
        LAGS.append(loop.time() - due)


async def report(every: float) -> None:
    """Print the round trips, CallErrors and this process's loop lag of each window."""
    global LAGS
    while True:
        await asyncio.sleep(every)
        rtts, SimStation.rtts = sorted(SimStation.rtts), []
        errors, SimStation.errors = SimStation.errors, 0
        lags, LAGS = sorted(LAGS), []
        if rtts:
            emit(
                stats={
                    "calls": len(rtts),
                    "errors": errors,
                    "p50_ms": round(rtts[len(rtts) // 2] * 1000, 2),
                    "p99_ms": round(rtts[int(len(rtts) * 0.99)] * 1000, 2),
                    "lag_p99_ms": round(lags[int(len(lags) * 0.99)] * 1000, 2) if lags else None,
                }
            )


async def main(args) -> None:
    keys = {}
    if args.keys:
        with open(args.keys) as handle:
            keys = json.load(handle)
    stations = [
        SimStation(f"{args.prefix}{n:05d}", args.connectors, args.meter_seconds)
        for n in range(args.first, args.first + args.stations)
    ]
    events = [asyncio.Event() for _ in stations]
    tasks = []
    started = time.monotonic()
    for index, (station, event) in enumerate(zip(stations, events, strict=True)):
        key = keys.get(station.cp_id, args.key)
        url = f"ws://{station.cp_id}:{key}@{args.host}:{args.port}/ocpp/{station.cp_id}"
        tasks.append(asyncio.get_running_loop().create_task(station.run(url, event)))
        if index % args.ramp == args.ramp - 1:
            await asyncio.sleep(1)
    deadline = time.monotonic() + args.connect_timeout
    while time.monotonic() < deadline and not all(event.is_set() for event in events):
        if all(event.is_set() or task.done() for event, task in zip(events, tasks, strict=True)):
            break
        await asyncio.sleep(0.5)
    up = sum(event.is_set() for event in events)
    failed = [task.exception() for task in tasks if task.done() and task.exception() is not None]
    emit(
        connected=up,
        failed=len(failed),
        retries=SimStation.retries,
        seconds=round(time.monotonic() - started, 1),
        first_failure=repr(failed[0]) if failed else None,
    )
    if args.stats:
        asyncio.get_running_loop().create_task(probe_lag())
        asyncio.get_running_loop().create_task(report(args.stats))
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stations", type=int, default=2000)
    parser.add_argument("--first", type=int, default=1, help="number of the first station (for several processes)")
    parser.add_argument("--connectors", type=int, default=5)
    parser.add_argument("--meter-seconds", type=float, default=60)
    parser.add_argument("--ramp", type=int, default=25, help="connections opened per second")
    parser.add_argument("--prefix", default="BENCH-")
    parser.add_argument("--key", default="", help="the AuthorizationKey of every station")
    parser.add_argument("--keys", default="", help="a JSON file {charge point id: key}")
    parser.add_argument("--stats", type=float, default=0, help="print round trips every N seconds")
    parser.add_argument("--connect-timeout", type=float, default=600, help="seconds to wait for every boot")
    asyncio.run(main(parser.parse_args()))
