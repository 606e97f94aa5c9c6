"""MQTT fixtures: the real Mosquitto on 127.0.0.1:1883, our link running in a background event loop."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from chargeshed.ports.mqtt import BrokerSettings, MqttLink, RelayReading
from chargeshed.ports.shelly import ShellyProtocol
from chargeshed.ports.tasmota import TasmotaProtocol
from tests.conftest import skip_or_fail
from tests.ports.emulators.base import BROKER_HOST, BROKER_PORT, unique, wait_for


@pytest.fixture(scope="session")
def broker() -> tuple[str, int]:
    """The Mosquitto broker every MQTT test talks through (skipped locally, failed on CI, when down)."""
    try:
        socket.create_connection((BROKER_HOST, BROKER_PORT), timeout=2).close()
    except OSError as error:
        skip_or_fail(f"Mosquitto is not answering on {BROKER_HOST}:{BROKER_PORT}: {error}")
    return BROKER_HOST, BROKER_PORT


class LinkRunner:
    """An MqttLink on its own event loop thread, like the gateway's; the test calls into it."""

    def __init__(self, link: MqttLink):
        self.link = link
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="mqtt-link", daemon=True)
        self.thread.start()
        self.task = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(5)

    async def _start(self):
        return asyncio.get_running_loop().create_task(self.link.run())

    def call(self, coroutine, timeout: float = 20.0):
        """Run a coroutine on the link's loop and return its result (exceptions re-raised)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def wait_connected(self, connections: int = 1) -> None:
        wait_for(
            lambda: self.link.connected.is_set() and self.link.connections >= connections, 15, "the link to connect"
        )

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.task.cancel)
        time.sleep(0.05)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class Readings(list):
    """Everything the link handed to its sink, with helpers to wait for and pick readings."""

    def of(self, target: str) -> list[RelayReading]:
        return [r for r in list(self) if r.target == target]

    def latest(self, target: str, field: str):
        """The last non-None value of `field` reported for `target`."""
        values = [getattr(r, field) for r in self.of(target) if getattr(r, field) is not None]
        return values[-1] if values else None

    def wait(self, target: str, field: str, expected, timeout: float = 10.0):
        wait_for(
            lambda: self.latest(target, field) == expected,
            timeout,
            f"{target} {field} == {expected!r} (last {self.latest(target, field)!r})",
        )


@pytest.fixture
def mqtt_link(broker):
    """Make a running link (Shelly and Tasmota protocols, list sink); stopped at the end."""
    runners: list[LinkRunner] = []

    def make(*, port: int | None = None, timeout: float = 3.0, **backoff) -> tuple[LinkRunner, Readings]:
        readings = Readings()
        settings = BrokerSettings.from_url(f"mqtt://{broker[0]}:{port or broker[1]}", client_id=unique("gw"))
        link = MqttLink(
            settings,
            [ShellyProtocol(settings.client_id, timeout=timeout), TasmotaProtocol(timeout=timeout)],
            readings.append,
            **backoff,
        )
        runner = LinkRunner(link)
        runners.append(runner)
        return runner, readings

    yield make
    for runner in runners:
        runner.stop()


@pytest.fixture
def devices():
    """Emulated devices to close at the end of the test."""
    made = []
    yield made
    for device in made:
        device.close()


@pytest.fixture
def mqtt_gateway(app, clock, broker):
    """Start gateways (MQTT adapters, the test's clock) on their own threads; stopped at the end."""
    from tests.ports.gateway_runner import GatewayRunner

    started: list[GatewayRunner] = []

    def start() -> GatewayRunner:
        started.append(GatewayRunner(app, clock))
        return started[-1]

    yield start
    for runner in started:
        runner.stop()
