"""Which port driver the app uses, and the worker loop that supervises it."""

from __future__ import annotations

import logging
import signal
import threading
import time

from flask import Flask, current_app

from chargeshed.timeutil import now as clock_now

log = logging.getLogger(__name__)

# Longest a wait lasts before the loop looks at its stop flag again (SIGTERM is honoured this fast).
WAIT_SLICE_SECONDS = 0.5


def init_ports(app: Flask) -> None:
    """Register the lazy driver slot; the driver is built on first use, not at import."""
    app.extensions.setdefault("port_driver", None)


def get_driver(app: Flask | None = None):
    """The app's port driver (SimDriver unless configured otherwise)."""
    app = app or current_app._get_current_object()
    driver = app.extensions.get("port_driver")
    if driver is None:
        if app.config["PORT_DRIVER"] != "sim":
            raise RuntimeError(f"unknown PORT_DRIVER {app.config['PORT_DRIVER']}")
        from chargeshed.ports.sim import SimDriver

        driver = SimDriver(clock_now, seed=7, speed=float(app.config["SIM_SPEED"]),
                           state_path=app.config.get("SIM_STATE_FILE") or None)
        app.extensions["port_driver"] = driver
    return driver


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
    """Loops the supervisor tick until stopped (SIGTERM/SIGINT or stop()).

    A full tick runs every `interval` seconds. In between, on PostgreSQL, the worker LISTENs
    for new port commands and sends them at once, so a start goes out within milliseconds of
    the web process queuing it. A stop request lets the current round finish, then returns.
    """

    def __init__(self, app: Flask, interval: float, *, listen: bool = True):
        self.app = app
        self.interval = interval
        self.listen = listen
        self.stopping = threading.Event()
        self.start_timeout = int(app.config.get("START_TIMEOUT_SECONDS", 60))

    def stop(self, *_args) -> None:
        """Finish the current round, then return."""
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        """Graceful shutdown on SIGTERM and SIGINT (main thread only)."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run(self) -> None:
        """Tick every `interval` seconds; errors are logged and the loop goes on."""
        from chargeshed.charging.supervisor import run_commands, tick
        from chargeshed.safety.incidents import sync_incidents

        driver = get_driver(self.app)
        listener = CommandListener.open(self.app) if self.listen else None
        log.info("worker started", extra={"event": "worker.start", "interval": self.interval,
                                          "listening": listener is not None})
        try:
            while not self.stopping.is_set():
                started = time.monotonic()
                self._round("tick", lambda: tick(driver, clock_now(), start_timeout=self.start_timeout))
                self._round("incidents", lambda: sync_incidents(clock_now()))
                if listener is None and self.listen:
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
                        self._round("commands", lambda: run_commands(driver, clock_now()))
        finally:
            if listener is not None:
                listener.close()
            log.info("worker stopped", extra={"event": "worker.stop"})

    def _round(self, name: str, work) -> None:
        """Run one unit of supervision in a fresh app context; never let an error end the loop."""
        from chargeshed.extensions import db

        with self.app.app_context():
            try:
                started = time.perf_counter()
                report = work()
                if name == "tick" and report.busy:
                    log.info("tick", extra={"event": "supervisor.tick", "confirmed": report.confirmed,
                                            "ended": report.ended, "failed": report.failed,
                                            "commands": report.commands, "alerts": report.alerts,
                                            "ports": report.ports_read,
                                            "ms": round((time.perf_counter() - started) * 1000, 1)})
                elif name == "commands" and report:
                    log.info("commands sent", extra={"event": "supervisor.commands", "ports": sorted(report)})
            except Exception:  # keep supervising; the next round retries
                log.exception("supervisor %s failed", name)
                db.session.rollback()
            finally:
                db.session.remove()
