"""The gateway process with a stand-in adapter: reports stored off the loop, commands delivered per device."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from chargeshed.extensions import db
from chargeshed.ports import outbox, telemetry
from chargeshed.ports.gateway import Adapter, CommandRejected, Gateway
from chargeshed.ports.models import CMD_SET_AVAILABLE, CMD_STOP, DeviceLink, PortCommand, PortTelemetry
from chargeshed.ports.models import Gateway as GatewayRow
from chargeshed.ports.telemetry import Reading
from chargeshed.sites.models import Port
from chargeshed.timeutil import utcnow


class StandInRelays(Adapter):
    """Relays on a pretend broker: `silent` never answers, `refusing` refuses, the others acknowledge."""

    scheme = "shelly"

    def __init__(self):
        self.reporter = None
        self.sent: list[tuple[str, str]] = []
        self.closed = False

    async def start(self, reporter):
        self.reporter = reporter

    async def send(self, command):
        self.sent.append((command.target.device_id, command.kind))
        if command.target.device_id == "silent":
            await asyncio.sleep(3600)
        if command.target.device_id == "refusing":
            raise CommandRejected("overpower")

    async def close(self):
        self.closed = True


def wait_for(condition, seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def running(app):
    """A gateway with the stand-in adapter, served on its own thread and event loop."""
    adapter = StandInRelays()
    gateway = Gateway(app, [adapter], gateway_id="gw-test", poll_seconds=0.1, heartbeat_seconds=0.5, send_timeout=0.5)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(gateway.serve(),), daemon=True)
    thread.start()
    assert gateway.ready.wait(20)

    def call(fn, *args):
        """Run fn(*args) on the gateway's loop, as an adapter would, and wait for its result."""

        async def run():
            result = fn(*args)
            return await result if asyncio.iscoroutine(result) else result

        return asyncio.run_coroutine_threadsafe(run(), loop).result(20)

    yield gateway, adapter, call
    gateway.stop()
    thread.join(20)
    loop.close()
    assert not thread.is_alive()


def _ports(make_site, *names):
    make_site(sheds=(len(names),))
    ports = db.session.execute(select(Port).order_by(Port.id)).scalars().all()
    for port, name in zip(ports, names, strict=True):
        telemetry.bind(port, f"shelly:{name}/0")
    db.session.commit()
    return ports


def _fresh(model, key):
    db.session.expire_all()
    return db.session.get(model, key)


def test_reports_are_stored_and_commands_go_out_without_a_silent_device_holding_others(app, make_site, running):
    gateway, adapter, call = running
    silent, healthy, refusing = _ports(make_site, "silent", "healthy", "refusing")
    reporter = adapter.reporter
    now = utcnow()
    call(reporter.link, "shelly:healthy", True)
    call(
        reporter.reading, "shelly:healthy/0", Reading(at=now, state="Charging", watts=182, meter_wh=5000, relay_on=True)
    )
    call(reporter.flush)
    row = _fresh(PortTelemetry, healthy.id)
    assert (row.state, row.watts, row.meter_wh, row.link_online) == ("Charging", 182, 5000, True)
    assert _fresh(DeviceLink, "shelly:healthy").gateway_id == "gw-test"

    for port in (silent, healthy, refusing):
        outbox.enqueue(port.id, CMD_STOP, argument="full")
    outbox.enqueue(healthy.id, CMD_SET_AVAILABLE, argument="off")
    db.session.commit()

    def statuses():
        db.session.expire_all()
        return db.session.execute(select(PortCommand.status).order_by(PortCommand.id)).scalars().all()

    # The healthy relay gets both its commands while the silent one's first is still unanswered.
    wait_for(lambda: statuses()[1] == "done" and statuses()[3] == "done")
    assert statuses()[2] == "rejected"
    wait_for(lambda: _fresh(PortCommand, 1).attempts >= 1)
    silent_command = _fresh(PortCommand, 1)
    assert silent_command.status in ("queued", "sending") and "TimeoutError" in silent_command.error
    assert adapter.sent.count(("healthy", "stop")) == 1  # acknowledged: never sent again
    assert _fresh(GatewayRow, "gw-test").heartbeat_at is not None


def test_stop_closes_the_adapters_and_releases_the_devices(app, make_site, running):
    gateway, adapter, call = running
    _ports(make_site, "healthy")
    call(adapter.reporter.link, "shelly:healthy", True)
    call(adapter.reporter.flush)
    gateway.stop()
    wait_for(lambda: adapter.closed)
    wait_for(lambda: _fresh(GatewayRow, "gw-test").stopped_at is not None)
    link = _fresh(DeviceLink, "shelly:healthy")
    assert (link.online, link.gateway_id) == (False, None)
    assert db.session.execute(select(PortTelemetry.link_online)).scalar_one() is False


def test_the_writer_stores_a_burst_of_readings_in_a_few_statements_and_skips_only_a_bad_one(app, make_site):
    from sqlalchemy import event

    make_site(sheds=(40,))
    ports = db.session.execute(select(Port).order_by(Port.id)).scalars().all()
    for number, port in enumerate(ports):
        telemetry.bind(port, f"shelly:box-{number // 4}/{number % 4}")
    db.session.commit()
    gateway = Gateway(app, [StandInRelays()], gateway_id="gw-batch")
    at = utcnow().replace(microsecond=0)

    def burst(watts_from: int, moment) -> list:
        items = [
            (
                telemetry.record_reading,
                (f"shelly:box-{n // 4}/{n % 4}", Reading(at=moment, watts=watts_from + n, meter_wh=n), moment),
                {},
            )
            for n in range(40)
        ]
        items.insert(20, (telemetry.record_link, ("shelly:box-2", True, moment), {}))
        return items

    def stored() -> dict:
        db.session.expire_all()
        return {row.target: row.watts for row in db.session.execute(select(PortTelemetry)).scalars()}

    statements = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        gateway._write_batch(burst(100, at))
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert stored() == {f"shelly:box-{n // 4}/{n % 4}": 100 + n for n in range(40)}
    # 40 readings around a link report: one locking read per run of readings, not one per reading.
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "FROM port_telemetry" in s]
    assert len(reads) <= 6, len(reads)
    if db.engine.dialect.name == "postgresql":  # psycopg sends a run's UPDATEs as one executemany
        updates = [s for s in statements if s.lstrip().upper().startswith("UPDATE PORT_TELEMETRY")]
        assert len(updates) <= 6, len(updates)

    later = at + timedelta(seconds=1)
    items = burst(200, later)
    items.insert(30, (telemetry.record_reading, ("shelly:box-3/1", Reading(at=later, watts="lots"), later), {}))
    gateway._write_batch(items)
    assert stored() == {f"shelly:box-{n // 4}/{n % 4}": 200 + n for n in range(40)}  # only the bad one is lost
