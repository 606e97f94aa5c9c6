"""The gateway process and the adapter interface every device protocol implements.

`flask --app chargeshed gateway` runs one asyncio loop holding one adapter per protocol (OCPP 1.6J
stations, Shelly and Tasmota relays over MQTT, …). Devices push; the gateway stores what they say
in the telemetry store; the worker's supervisor reads it and queues commands in the outbox; the
gateway that can reach the device sends them.

Writing an adapter
------------------
Subclass `Adapter` and list its module in ADAPTER_MODULES; the module exposes
``adapters(config: Mapping) -> list[Adapter]`` (config = the Flask app config: OCPP_LISTEN,
MQTT_URL, …). Each adapter:

- ``scheme``: the target scheme it handles (``ocpp``, ``shelly``, ``tasmota``; see
  chargeshed.ports.targets). ``routed = True`` when only the gateway holding the device's
  connection can reach it (OCPP websockets): commands for such a device go to the gateway that last
  reported it online (`Reporter.link`). Broker-reachable devices (MQTT) leave it False: any
  gateway may send, and SKIP LOCKED claims make sure exactly one does.
- ``async start(reporter)``: connect / listen, keep the `Reporter` to report through, return once
  running (background tasks are fine). ``async close()``: stop them; called on SIGTERM.
- ``async send(command)``: deliver one outbox `Command` (chargeshed.ports.outbox.Command):
  ``kind`` is ``start`` (switch on for ``session_ref``, with ``cap_seconds`` as the device-side
  cap: Shelly ``toggle_after``, Tasmota ``PulseTime``, …), ``stop`` (``reason``) or
  ``set_available`` (``available``); ``target`` is the parsed port target (device_id, channel).
  Return when the device acknowledged it. Raise `CommandRejected` (with a reason) when it refused;
  `DeviceUnreachable` (or let `asyncio.TimeoutError` happen) when it did not answer: the command is
  retried with backoff, later failed with the reason. The gateway sends one command at a time per
  device and cancels a send after SEND_TIMEOUT_SECONDS. A repeated start of the same session must
  be a no-op on the device (after a gateway crash a command may be sent again).

Reporting (from the event loop, never blocking: writes are queued and stored in batches, off the
loop, by a writer thread; order is kept):

- ``reporter.reading(target, Reading(...))``: a port's state / W / meter Wh / relay / fault /
  temperature, with the device's timestamp (``Reading`` from chargeshed.ports.telemetry; fields
  left None keep their stored value; meter counters that reset are handled by the store).
- ``reporter.link(device, online, state=None)``: a device (``ocpp:CP-7``, ``shelly:<prefix>``,
  ``tasmota:<topic>``, or any of its targets) connected, disconnected or was heard from
  (heartbeat). Report something at least every minute per device, or its ports read offline after
  4 minutes.
- ``reporter.session_started(target, session_ref, at, meter_wh)`` /
  ``reporter.session_stopped(target, session_ref, at, meter_wh, reason)``: the device began or ended
  the session for our ``session_ref`` (OCPP Start/StopTransaction, possibly late and queued; a
  relay's acknowledgement of a start). The supervisor confirms a pending session once the device
  runs its ref with the relay on, and bills from the device's meter between start and stop. Stop
  reasons: ``local``, ``remote``, ``unplugged``, ``fault``, ``power_loss``, ``other``.
- ``await reporter.run_db(fn, *args)``: run a synchronous database function in the writer's
  threads, inside an app context, committed; e.g. ``registry.check_key(cp_id, key)`` at an OCPP
  handshake. ``await reporter.flush()`` waits until everything reported so far is stored.
- ``reporter.now()``: the current time (naive UTC); ``reporter.gateway_id``: this gateway.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import gc
import importlib
import importlib.util
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, ClassVar

from flask import Flask

from chargeshed.ports import outbox, registry, telemetry
from chargeshed.ports.driver import PortOffline, PortRejected
from chargeshed.ports.outbox import Command
from chargeshed.ports.telemetry import Reading
from chargeshed.timeutil import utcnow

log = logging.getLogger(__name__)

# Adapter modules the gateway loads when present; each exposes adapters(config) -> list[Adapter].
ADAPTER_MODULES = ("chargeshed.ports.ocpp", "chargeshed.ports.mqtt")
SEND_TIMEOUT_SECONDS = 10.0
POLL_SECONDS = 1.0  # backup for LISTEN/NOTIFY (and the only wake-up on SQLite)
HEARTBEAT_SECONDS = 10.0
MAX_IN_FLIGHT = 500  # commands being sent at once, across devices
WRITE_BATCH = 500
RETRY_MAX_SECONDS = 30.0
# Garbage collection in the `flask gateway` process. A collection of CPython's oldest generation
# walks every object the process holds and stops the event loop meanwhile: at 2,000 stations that
# was 0.2–1 s, about once a minute with the default thresholds, and every frame and command caught
# behind it waited. The objects made at startup are frozen out of collections, young collections
# run less often (fewer objects that are about to die are promoted), and the full collection runs
# every GC_FULL_SECONDS, when the gateway says, instead of whenever the thresholds say.
GC_YOUNG_THRESHOLD = 10_000
GC_NO_AUTOMATIC_FULL = 1_000_000
GC_FULL_SECONDS = 600.0
# How often the claim also takes back the commands of gateways that died mid-send (those wait
# outbox.CLAIM_EXPIRES_SECONDS anyway).
REQUEUE_SECONDS = 10.0
_CLOSE = object()  # the writer's last item

# What an adapter raises (the same exceptions the simulator raises).
CommandRejected = PortRejected
DeviceUnreachable = PortOffline

__all__ = ["Adapter", "Command", "CommandRejected", "DeviceUnreachable", "Gateway", "Reading", "Reporter"]


class Adapter(abc.ABC):
    """One device protocol inside the gateway (see the module docstring for the contract)."""

    scheme: ClassVar[str]
    routed: ClassVar[bool] = False

    @abc.abstractmethod
    async def start(self, reporter: Reporter) -> None:
        """Connect or listen; keep `reporter`; return once running."""

    @abc.abstractmethod
    async def send(self, command: Command) -> None:
        """Deliver one command; return on acknowledgement, raise CommandRejected or DeviceUnreachable."""

    async def close(self) -> None:  # noqa: B027  (optional)
        """Close connections and background tasks."""


class Reporter:
    """What adapters call to report what devices say (non-blocking; see the module docstring)."""

    def __init__(self, gateway: Gateway):
        self._gateway = gateway
        self.gateway_id = gateway.gateway_id

    def now(self) -> datetime:
        """The current time, naive UTC (the storage convention)."""
        return self._gateway.clock()

    def reading(self, target: str, reading: Reading) -> None:
        """Store a port's reading (queued; written in order, in batches, off the event loop)."""
        self._gateway.write(telemetry.record_reading, target, reading, self.now())

    def link(self, device: str, online: bool, *, state: str | None = None) -> None:
        """A device connected (online=True, also a heartbeat) or disconnected."""
        self._gateway.write(telemetry.record_link, device, online, self.now(), gateway_id=self.gateway_id, state=state)
        if online:
            self._gateway.wake_after_write()

    def session_started(self, target: str, session_ref: str, at: datetime, meter_wh: int | None = None) -> None:
        """The device started our session `session_ref` at `at` (device time), meter at `meter_wh`."""
        self._gateway.write(
            telemetry.record_session_event,
            target,
            telemetry.STARTED,
            at,
            session_ref,
            meter_wh=meter_wh,
            heard_at=self.now(),
        )

    def session_stopped(
        self, target: str, session_ref: str, at: datetime, meter_wh: int | None = None, reason: str = "other"
    ) -> None:
        """The device ended our session `session_ref` at `at` (device time), meter at `meter_wh`."""
        self._gateway.write(
            telemetry.record_session_event,
            target,
            telemetry.STOPPED,
            at,
            session_ref,
            meter_wh=meter_wh,
            reason=reason,
            heard_at=self.now(),
        )

    async def run_db(self, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """Run a synchronous database function off the loop (app context, committed); its result."""
        return await self._gateway.run_db(fn, *args, **kwargs)

    async def flush(self) -> None:
        """Wait until every report made so far is stored."""
        await self._gateway.flush()


def load_adapters(config: Mapping) -> list[Adapter]:
    """The adapters of every installed adapter module."""
    adapters: list[Adapter] = []
    for name in ADAPTER_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(name)
        factory = getattr(module, "adapters", None)
        if factory is not None:
            adapters.extend(factory(config))
    return adapters


class Gateway:
    """One gateway process: adapters, the batching telemetry writer, command delivery, heartbeats.

    Database work runs in a small thread pool, each call in its own app context and transaction,
    never on the event loop. Commands are claimed from the outbox when NOTIFY wakes the gateway
    (PostgreSQL) or every POLL_SECONDS, in a thread of their own (never behind telemetry batches);
    each is sent with a timeout, one at a time per device, many devices at once. Database errors
    (database down) are retried with backoff; the gateway does not exit. `stop()` (SIGTERM) closes
    the adapters, stores what is queued, and returns.
    """

    def __init__(
        self,
        app: Flask,
        adapters: list[Adapter],
        *,
        gateway_id: str | None = None,
        clock: Callable[[], datetime] | None = None,
        poll_seconds: float = POLL_SECONDS,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        send_timeout: float = SEND_TIMEOUT_SECONDS,
    ):
        self.app = app
        self.adapters = {adapter.scheme: adapter for adapter in adapters}
        self.gateway_id = gateway_id or f"{socket.gethostname()[:30]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.clock = clock or app.extensions.get("clock") or utcnow  # the app's clock (tests install one)
        self.poll_seconds = poll_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.send_timeout = send_timeout
        self.reporter = Reporter(self)
        # Database threads: SQLite takes one writer at a time (and detects a deadlock rather than
        # waiting when two transactions upgrade their locks), so its work is serialised.
        from chargeshed.extensions import db

        with app.app_context():
            sqlite = db.engine.url.get_backend_name() == "sqlite"
        self._executor = ThreadPoolExecutor(max_workers=1 if sqlite else 3, thread_name_prefix="gateway-db")
        # Claims get a thread of their own, so a command never waits behind telemetry batches.
        self._claimer = (
            self._executor if sqlite else ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-claim")
        )
        self._requeued_at: datetime | None = None
        self._queue: asyncio.Queue | None = None
        self._wake: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._device_locks: dict[str, asyncio.Lock] = {}
        self._in_flight: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._notified_at: float | None = None  # first NOTIFY since the last claim (epoch seconds)
        self._claim_running_at: float | None = None
        self.ready = threading.Event()  # set once every adapter has started (tests wait on it)

    # --- reporting ---------------------------------------------------------------------------
    def write(self, fn: Callable[..., Any], *args, **kwargs) -> None:
        """Queue one telemetry write (from the event loop)."""
        self._queue.put_nowait((fn, args, kwargs))

    def wake_after_write(self) -> None:
        """Look for commands once the queued writes are stored (a device came online)."""
        self._queue.put_nowait((None, (), {}))

    async def flush(self) -> None:
        """Wait until the writes queued so far are stored."""
        done = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((done, (), {}))
        await done

    async def run_db(self, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """Run `fn` in a database thread inside an app context; commit on success, roll back on error."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._in_context, fn, args, kwargs)

    def _in_context(self, fn, args, kwargs):
        from chargeshed.extensions import db

        with self.app.app_context():
            try:
                result = fn(*args, **kwargs)
                db.session.commit()
                return result
            except BaseException:
                db.session.rollback()
                raise
            finally:
                db.session.remove()

    def _write_batch(self, items: list) -> None:
        """Store a batch of reports in one transaction; a report that fails alone is logged and skipped.

        Consecutive readings are stored together (telemetry.record_readings: one locking read, one
        flush); other reports one by one, in the order they came. A group that fails is stored again
        report by report, so one bad report never loses the others.
        """
        from chargeshed.extensions import db

        with self.app.app_context():
            try:
                for group in _reading_runs(items):
                    if len(group) > 1 and self._store(_readings_call(group)):
                        continue
                    for item in group:
                        self._store(item)
                db.session.commit()
            except BaseException:
                db.session.rollback()
                raise
            finally:
                db.session.remove()

    @staticmethod
    def _store(item) -> bool:
        """One report (or one group of readings) in its own savepoint; False when it failed."""
        from chargeshed.extensions import db

        fn, args, kwargs = item
        try:
            with db.session.begin_nested():
                fn(*args, **kwargs)
            return True
        except Exception as exc:
            if _is_connection_error(exc):
                raise
            log.exception(
                "telemetry write %s failed; skipped",
                getattr(fn, "__name__", fn),
                extra={"event": "gateway.write_error"},
            )
            return False

    async def _writer(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            items = [first]
            while len(items) < WRITE_BATCH and not self._queue.empty():
                items.append(self._queue.get_nowait())
            writes = [item for item in items if callable(item[0]) and not isinstance(item[0], asyncio.Future)]
            delay = 0.5
            while writes:
                try:
                    await loop.run_in_executor(self._executor, self._write_batch, writes)
                    break
                except Exception:
                    log.warning(
                        "telemetry writes failed (database down?); retrying in %.1fs",
                        delay,
                        exc_info=True,
                        extra={"event": "gateway.db_retry"},
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_SECONDS)
            for fn, _args, _kwargs in items:
                if fn is None:
                    self._wake.set()
                elif isinstance(fn, asyncio.Future) and not fn.done():
                    fn.set_result(None)
            if any(item[0] is _CLOSE for item in items):
                return

    # --- commands ----------------------------------------------------------------------------
    def _claim(self) -> list[Command]:
        from chargeshed.extensions import db

        self._claim_running_at = time.time()
        with self.app.app_context():
            try:
                routed = tuple(scheme for scheme, adapter in self.adapters.items() if adapter.routed)
                now = self.clock()
                since = None if self._requeued_at is None else (now - self._requeued_at).total_seconds()
                requeue = since is None or not 0 <= since < REQUEUE_SECONDS
                commands = outbox.claim(
                    now, gateway_id=self.gateway_id, schemes=tuple(self.adapters), routed=routed, requeue=requeue
                )
                if requeue:
                    self._requeued_at = now
                return commands
            finally:
                db.session.remove()

    def _mark(self, command: Command, outcome: str, reason: str) -> None:
        from chargeshed.extensions import db

        with self.app.app_context():
            try:
                now = self.clock()
                if outcome == "done":
                    outbox.mark_done(command.id, now)
                elif outcome == "rejected":
                    outbox.mark_rejected(command.id, reason, now)
                else:
                    outbox.mark_unanswered(command.id, reason, now)
            finally:
                db.session.remove()

    async def _deliver(self, command: Command, times: dict[str, float | None]) -> None:
        adapter = self.adapters[command.target.scheme]
        lock = self._device_locks.setdefault(command.target.device, asyncio.Lock())
        async with self._in_flight, lock:
            times["sending_at"] = time.time()
            try:
                await asyncio.wait_for(adapter.send(command), self.send_timeout)
                outcome, reason = "done", ""
            except CommandRejected as exc:
                outcome, reason = "rejected", str(exc) or "rejected"
            except (DeviceUnreachable, TimeoutError, ConnectionError, OSError) as exc:
                outcome, reason = "unanswered", f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # an adapter bug must not lose the command
                log.exception("adapter %s failed sending command %s", adapter.scheme, command.id)
                outcome, reason = "unanswered", f"{type(exc).__name__}: {exc}"
            times["answered_at"] = time.time()
        log.info(
            "command %s",
            outcome,
            extra={
                "event": "gateway.command",
                "command_id": command.id,
                "kind": command.kind,
                "target": command.target.text,
                "session_ref": command.session_ref,
                "outcome": outcome,
                "reason": reason,
                # Epoch seconds: NOTIFY heard (None: found by polling), claim asked for, run in a
                # database thread, done; handed to the adapter (after the device's earlier
                # commands); device answered.
                **{key: None if value is None else round(value, 6) for key, value in times.items()},
            },
        )
        delay = 0.5
        while True:  # an acknowledgement must be stored, or the command would be sent again
            try:
                await asyncio.get_running_loop().run_in_executor(self._executor, self._mark, command, outcome, reason)
                break
            except Exception:
                log.warning("cannot store the outcome of command %s; retrying", command.id, exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
        self._wake.set()  # the port's next command may go now

    async def _commands(self) -> None:
        loop = asyncio.get_running_loop()
        delay = 0.5
        while not self._stopping.is_set():
            self._wake.clear()
            notified_at, self._notified_at = self._notified_at, None
            claim_at = time.time()
            try:
                commands = await loop.run_in_executor(self._claimer, self._claim)
                delay = 0.5
            except Exception:
                log.warning(
                    "cannot claim commands (database down?); retrying in %.1fs",
                    delay,
                    exc_info=True,
                    extra={"event": "gateway.db_retry"},
                )
                commands = []
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
            times = {
                "notified_at": notified_at,
                "claim_at": claim_at,
                "claim_running_at": self._claim_running_at,  # a database thread took it up
                "claimed_at": time.time(),
            }
            for command in commands:
                self._spawn(self._deliver(command, dict(times)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)

    async def _listen(self) -> None:
        """Wake the command loop on NOTIFY (PostgreSQL only); reconnect with backoff."""
        from chargeshed.extensions import db

        with self.app.app_context():
            url = db.engine.url
        if url.get_backend_name() != "postgresql":
            return
        import psycopg

        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        delay = 0.5
        while not self._stopping.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {outbox.CHANNEL}")
                    delay = 0.5
                    self._wake.set()  # anything queued while we were not listening
                    async for _notice in conn.notifies():
                        if self._notified_at is None:
                            self._notified_at = time.time()
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("LISTEN connection lost; polling, reconnecting in %.1fs", delay, exc_info=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)

    async def _heartbeats(self) -> None:
        host = socket.gethostname()

        def beat():
            now = self.clock()
            registry.heartbeat(self.gateway_id, now, host=host)
            registry.reap_dead_gateways(now, self.heartbeat_seconds)

        while not self._stopping.is_set():
            try:
                await self.run_db(beat)
            except Exception:
                log.warning("gateway heartbeat failed (database down?)", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.heartbeat_seconds)

    def _spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- life cycle --------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the gateway to stop (thread-safe; SIGTERM calls it)."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)

    async def serve(self) -> None:
        """Run until stop(): adapters, writer, command delivery, LISTEN, heartbeats."""
        self._loop = asyncio.get_running_loop()
        self._queue, self._wake, self._stopping = asyncio.Queue(), asyncio.Event(), asyncio.Event()
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        writer = self._loop.create_task(self._writer())
        background = [self._loop.create_task(job()) for job in (self._commands, self._listen, self._heartbeats)]
        started = []
        try:
            for adapter in self.adapters.values():
                await adapter.start(self.reporter)
                started.append(adapter)
            log.info(
                "gateway started",
                extra={"event": "gateway.start", "gateway_id": self.gateway_id, "schemes": sorted(self.adapters)},
            )
            self.ready.set()
            await self._stopping.wait()
        finally:
            self._stopping.set()
            for adapter in reversed(started):
                try:
                    await adapter.close()
                except Exception:
                    log.exception("closing adapter %s failed", adapter.scheme)
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            if self._tasks:  # sends in flight: let them finish (they time out on their own)
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.run_db(registry.release, self.gateway_id, self.clock())
            self._queue.put_nowait((_CLOSE, (), {}))
            try:
                await asyncio.wait_for(writer, 30)
            except (TimeoutError, Exception):
                writer.cancel()
            self._executor.shutdown(wait=True)
            self._claimer.shutdown(wait=True)
            log.info("gateway stopped", extra={"event": "gateway.stop", "gateway_id": self.gateway_id})

    def run(self) -> None:
        """Serve in this thread until SIGTERM or SIGINT (a process of its own: the garbage collector
        is set up for it, see GC_FULL_SECONDS)."""

        async def main():
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
            collector = loop.create_task(self._collect_garbage())
            try:
                await self.serve()
            finally:
                collector.cancel()

        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, 10, GC_NO_AUTOMATIC_FULL)
        asyncio.run(main())

    async def _collect_garbage(self) -> None:
        """The full collection, every GC_FULL_SECONDS (logged with how long it held the loop)."""
        while True:
            await asyncio.sleep(GC_FULL_SECONDS)
            started = time.perf_counter()
            found = gc.collect()
            log.info(
                "garbage collected",
                extra={"event": "gateway.gc", "objects": found, "ms": round((time.perf_counter() - started) * 1000)},
            )


def _reading_runs(items: list) -> list[list]:
    """The reports in order, consecutive `record_reading`s grouped (other reports alone)."""
    runs: list[list] = []
    for item in items:
        if item[0] is telemetry.record_reading and runs and runs[-1][0][0] is telemetry.record_reading:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def _readings_call(group: list) -> tuple:
    """One `record_readings` call for a run of `record_reading(key, reading, heard_at)` reports."""
    return (
        telemetry.record_readings,
        ([(args[0], args[1], args[2] if len(args) > 2 else None) for _fn, args, _kw in group],),
        {},
    )


def _is_connection_error(exc: BaseException) -> bool:
    from sqlalchemy.exc import DBAPIError, OperationalError

    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)
