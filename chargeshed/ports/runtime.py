"""Which port driver the app uses, and the worker loop that supervises it."""

from __future__ import annotations

import logging
import signal
import threading
import time

from flask import Flask, current_app

from chargeshed.timeutil import now as clock_now

log = logging.getLogger(__name__)


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

        driver = SimDriver(clock_now, seed=7, speed=float(app.config["SIM_SPEED"]))
        app.extensions["port_driver"] = driver
    return driver


class Worker:
    """Loops the supervisor tick until stopped (SIGTERM/SIGINT or stop())."""

    def __init__(self, app: Flask, interval: float):
        self.app = app
        self.interval = interval
        self.stopping = threading.Event()

    def stop(self, *_args) -> None:
        """Finish the current tick, then return."""
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        """Graceful shutdown on SIGTERM and SIGINT (main thread only)."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run(self) -> None:
        """Tick every `interval` seconds; errors are logged and the loop goes on."""
        from chargeshed.charging.supervisor import tick
        from chargeshed.extensions import db

        driver = get_driver(self.app)
        while not self.stopping.is_set():
            started = time.monotonic()
            with self.app.app_context():
                try:
                    report = tick(driver, clock_now())
                    if report.ended or report.failed or report.confirmed:
                        log.info("tick: %s", report)
                except Exception:  # keep supervising; the next tick retries
                    log.exception("supervisor tick failed")
                    db.session.rollback()
                finally:
                    db.session.remove()
            self.stopping.wait(max(0.0, self.interval - (time.monotonic() - started)))
