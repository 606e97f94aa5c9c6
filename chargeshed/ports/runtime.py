"""Which simulated hardware the app uses (built lazily: nothing happens at import)."""

from __future__ import annotations

from flask import Flask, current_app

from chargeshed.timeutil import now as clock_now


def init_ports(app: Flask) -> None:
    """Register the lazy driver slot; the driver is built on first use, not at import."""
    app.extensions.setdefault("port_driver", None)


def get_driver(app: Flask | None = None):
    """The app's simulated charging units (a SimDriver; tests install their own on the fake clock)."""
    app = app or current_app._get_current_object()
    driver = app.extensions.get("port_driver")
    if driver is None:
        if app.config["PORT_DRIVER"] != "sim":
            raise RuntimeError(f"unknown PORT_DRIVER {app.config['PORT_DRIVER']}")
        from chargeshed.ports.sim import SimDriver

        driver = SimDriver(
            clock_now, seed=7, speed=float(app.config["SIM_SPEED"]), state_path=app.config.get("SIM_STATE_FILE") or None
        )
        app.extensions["port_driver"] = driver
    return driver
