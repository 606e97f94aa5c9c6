"""The application loop: supervisor tick, port alerts, safety incidents (`flask --app chargeshed worker`).

The worker never talks to real hardware: gateways (`flask --app chargeshed gateway`) deliver the
outbox's commands and write what devices push into the telemetry store, which the tick reads. With
PORT_DRIVER=sim (the default, `make run`) the worker also plays the simulated devices in-process:
each round it delivers their commands and publishes their readings, through the same outbox and
telemetry store a gateway uses.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING

from flask import Flask

from chargeshed.config import START_TIMEOUT_SECONDS
from chargeshed.timeutil import now as clock_now

if TYPE_CHECKING:
    from chargeshed.safety.incidents import SyncReport

log = logging.getLogger(__name__)

# Longest a wait lasts before the loop looks at its stop flag again (SIGTERM is honoured this fast).
WAIT_SLICE_SECONDS = 0.5
SIM_GATEWAY_ID = "worker-sim"
# The simulated units answer at once: a claim older than this was left by a worker that was killed.
SIM_CLAIM_EXPIRES_SECONDS = 5


def deliver_sim(driver, now: datetime):
    """Send the queued commands of simulator-bound ports to the simulated units (see outbox.deliver)."""
    from chargeshed.ports import outbox
    from chargeshed.ports.sim import SimAdapter

    return outbox.deliver(
        SimAdapter(driver).send,
        now,
        gateway_id=SIM_GATEWAY_ID,
        schemes=("sim",),
        own_claims_expire=SIM_CLAIM_EXPIRES_SECONDS,
    )


def sim_round(driver, now: datetime, *, start_timeout: int | None = None, stopping=None):
    """One round with the simulated devices, in the order real ones would act.

    Commands go out, the units publish their readings, the supervisor ticks; the stops it queued go
    out and the units they reached publish again, so the ports' state after the stop is recorded
    in the same round. Returns the supervisor's TickReport (commands = commands delivered).
    `stopping` (a threading.Event) cuts the round short between steps, each its own transaction.
    """
    from chargeshed.charging.supervisor import TickReport, tick
    from chargeshed.ports.sim import SimAdapter

    adapter = SimAdapter(driver)
    timeout = start_timeout or START_TIMEOUT_SECONDS
    sent = deliver_sim(driver, now).sent
    if stopping is not None and stopping.is_set():
        return TickReport(commands=sent)
    adapter.publish()
    report = tick(now, start_timeout=timeout)
    after = deliver_sim(driver, now)
    report.commands = sent + after.sent
    if after.port_ids:
        adapter.publish(after.port_ids)
        report.add(tick(now, start_timeout=timeout))
    return report


def passes_step(now: datetime) -> int:
    """One worker round for monthly passes: book the pass revenue of the days that are over, commit."""
    from chargeshed.extensions import db
    from chargeshed.passes.service import book_recognised, local_day

    booked = book_recognised(local_day(now))
    db.session.commit()
    return booked


def incidents_step(now: datetime) -> SyncReport:
    """One worker round for safety incidents: open or extend them from the ports' events, commit."""
    from chargeshed.extensions import db
    from chargeshed.safety.incidents import sync_incidents

    report = sync_incidents(now)
    db.session.commit()
    return report


class CommandListener:
    """LISTEN on PostgreSQL for newly queued port commands (outbox.enqueue NOTIFYs on commit)."""

    def __init__(self, conninfo: str):
        import psycopg

        from chargeshed.ports.outbox import CHANNEL

        self.connection = psycopg.connect(conninfo, autocommit=True)
        self.connection.execute(f"LISTEN {CHANNEL}")

    @classmethod
    def open(cls, app: Flask) -> CommandListener | None:
        """A listener for the app's database, or None when it is not PostgreSQL (or unreachable)."""
        from chargeshed.extensions import db

        with app.app_context():
            url = db.engine.url
        if url.get_backend_name() != "postgresql":
            return None
        try:
            return cls(url.set(drivername="postgresql").render_as_string(hide_password=False))
        except Exception:  # the loop still ticks; it retries listening after the next tick
            log.warning("cannot LISTEN for port commands; polling only", exc_info=True)
            return None

    def wait(self, timeout: float) -> bool:
        """True when a command was queued within `timeout` seconds."""
        received = False
        for _notice in self.connection.notifies(timeout=timeout, stop_after=1):
            received = True
        return received

    def close(self) -> None:
        """Stop listening."""
        try:
            self.connection.close()
        except Exception:  # closing a broken connection
            pass


class Worker:
    """Loops the supervisor tick and the incident sync until stopped (SIGTERM/SIGINT or stop()).

    A full round runs every `interval` seconds. With the simulator in-process, the worker also
    LISTENs (PostgreSQL) for new commands in between and delivers them at once, so a start goes out
    within milliseconds of the web process queuing it. A stop request lets the current round
    finish, then returns.
    """

    def __init__(self, app: Flask, interval: float, *, listen: bool = True):
        self.app = app
        self.interval = interval
        self.listen = listen
        self.stopping = threading.Event()
        self.start_timeout = int(app.config.get("START_TIMEOUT_SECONDS", START_TIMEOUT_SECONDS))
        self.simulated = app.config.get("PORT_DRIVER", "sim") == "sim"

    def stop(self, *_args) -> None:
        """Finish the current round, then return."""
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        """Graceful shutdown on SIGTERM and SIGINT (main thread only)."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def _tick(self):
        from chargeshed.charging.supervisor import tick
        from chargeshed.ports.runtime import get_driver

        if self.simulated:
            return sim_round(
                get_driver(self.app), clock_now(), start_timeout=self.start_timeout, stopping=self.stopping
            )
        return tick(clock_now(), start_timeout=self.start_timeout)

    def _release_claims(self):
        from chargeshed.ports import outbox

        return outbox.release_claims(SIM_GATEWAY_ID, clock_now())

    def _commands(self):
        from chargeshed.ports.runtime import get_driver

        return deliver_sim(get_driver(self.app), clock_now()).port_ids

    def run(self) -> None:
        """Tick every `interval` seconds; errors are logged and the loop goes on."""
        from chargeshed.notify.config import notify_step

        listen = self.listen and self.simulated
        if self.simulated:  # commands a killed predecessor claimed go out again at once
            self._round("release", self._release_claims)
        listener = CommandListener.open(self.app) if listen else None
        log.info(
            "worker started",
            extra={
                "event": "worker.start",
                "interval": self.interval,
                "listening": listener is not None,
                "simulator": self.simulated,
            },
        )
        try:
            while not self.stopping.is_set():
                started = time.monotonic()
                self._round("tick", self._tick)
                if self.stopping.is_set():
                    break
                self._round("incidents", lambda: incidents_step(clock_now()))
                self._round("notify", lambda: notify_step(self.app, clock_now()))
                self._round("passes", lambda: passes_step(clock_now()))
                if listener is None and listen:
                    listener = CommandListener.open(self.app)
                while not self.stopping.is_set():
                    remaining = self.interval - (time.monotonic() - started)
                    if remaining <= 0:
                        break
                    if listener is None:
                        self.stopping.wait(min(remaining, WAIT_SLICE_SECONDS))
                        continue
                    try:
                        woken = listener.wait(min(remaining, WAIT_SLICE_SECONDS))
                    except Exception:
                        log.warning("lost the command listener; polling until the next tick", exc_info=True)
                        listener.close()
                        listener = None
                        continue
                    if woken:
                        self._round("commands", self._commands)
        finally:
            if listener is not None:
                listener.close()
            log.info("worker stopped", extra={"event": "worker.stop"})

    def _round(self, name: str, work) -> None:
        """Run one unit of work in a fresh app context; never let an error end the loop."""
        from chargeshed.extensions import db

        with self.app.app_context():
            try:
                started = time.perf_counter()
                report = work()
                if name == "tick" and report.busy:
                    log.info(
                        "tick",
                        extra={
                            "event": "supervisor.tick",
                            "confirmed": report.confirmed,
                            "ended": report.ended,
                            "failed": report.failed,
                            "commands": report.commands,
                            "alerts": report.alerts,
                            "late_settled": report.late_settled,
                            "ports": report.ports_read,
                            "ms": round((time.perf_counter() - started) * 1000, 1),
                        },
                    )
                elif name == "commands" and report:
                    log.info("commands sent", extra={"event": "supervisor.commands", "ports": sorted(report)})
            except Exception:  # keep supervising; the next round retries
                log.exception("worker %s failed", name)
                db.session.rollback()
            finally:
                db.session.remove()
