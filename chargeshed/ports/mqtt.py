"""MQTT metered relays: broker settings, normalised readings, meter counters and the broker link.

A relay channel is addressed by its hardware target: `shelly:<topic_prefix>/<switch_id>` or
`tasmota:<topic>[/<relay>]`. Protocols (ports/shelly.py, ports/tasmota.py) turn topics and payloads
into `RelayReading`s and encode commands; `MqttLink` holds one broker connection for all of them,
reconnecting with backoff, and hands every reading to a sink (the telemetry store's recorder).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol
from urllib.parse import unquote, urlsplit

from chargeshed.ports.driver import AVAILABLE, CHARGING, FAULTED, SUSPENDED_EV, PortOffline, PortRejected
from chargeshed.ports.gateway import Adapter, Command
from chargeshed.ports.telemetry import Reading
from chargeshed.timeutil import now as clock_now

log = logging.getLogger(__name__)

DEFAULT_URL = "mqtt://127.0.0.1:1883"
QOS = 1  # Shelly supports QoS 1 only; Tasmota accepts it.
# Seconds a device has to answer a command before the command counts as unanswered.
COMMAND_TIMEOUT_SECONDS = 10.0


class CommandRejected(PortRejected):
    """The device answered a command with an error."""


class CommandUnanswered(PortOffline):
    """The device (or the broker) did not answer in time, or is known to be offline."""


@dataclass(frozen=True)
class BrokerSettings:
    """Where and how to connect: host, port, credentials, TLS and our client id."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    client_id: str = ""

    @classmethod
    def from_url(
        cls,
        url: str = DEFAULT_URL,
        *,
        username: str | None = None,
        password: str | None = None,
        tls: bool | None = None,
        ca_file: str | None = None,
        client_id: str | None = None,
    ) -> BrokerSettings:
        """Settings from `mqtt://[user:pass@]host[:port]` or `mqtts://…` (TLS, port 8883 by default).

        Explicit arguments win over what the URL carries. The client id defaults to
        `chargeshed-<host name>-<pid>`: unique per gateway process, so RPC replies reach the right one.
        """
        parts = urlsplit(url or DEFAULT_URL)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"MQTT_URL must start with mqtt:// or mqtts://, not {parts.scheme!r}")
        secure = parts.scheme in ("mqtts", "ssl") if tls is None else tls
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if secure else 1883),
            username=username or (unquote(parts.username) if parts.username else None),
            password=password or (unquote(parts.password) if parts.password else None),
            tls=secure,
            ca_file=ca_file or None,
            client_id=client_id or f"chargeshed-{socket.gethostname()}-{os.getpid()}",
        )

    @classmethod
    def from_config(cls, config) -> BrokerSettings:
        """Settings from the app config: MQTT_URL, MQTT_USERNAME, MQTT_PASSWORD, MQTT_TLS, MQTT_CA_FILE,
        MQTT_CLIENT_ID (all optional)."""
        return cls.from_url(
            config.get("MQTT_URL") or DEFAULT_URL,
            username=config.get("MQTT_USERNAME") or None,
            password=config.get("MQTT_PASSWORD") or None,
            tls=config.get("MQTT_TLS"),
            ca_file=config.get("MQTT_CA_FILE") or None,
            client_id=config.get("MQTT_CLIENT_ID") or None,
        )

    def tls_context(self) -> ssl.SSLContext | None:
        """A verifying TLS context (system roots, or the configured CA file), or None without TLS."""
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=self.ca_file)


@dataclass(frozen=True)
class RelayReading:
    """What one relay channel reported in one message; None means "not in this message".

    `meter_wh` is the energy counter (Wh) as the device reports it; for devices whose counter goes back
    to an old value after a restart (Tasmota) the link rebases it (see MeterCounter) and keeps the
    device's own figure in `device_meter_wh`. A counter that restarts at 0 (Shelly) passes unchanged:
    the telemetry store counts from 0 after a reset.
    `fault` is "" when the device says it has no error, a code when it has one
    (`overload`, `overheat` from the devices' power and temperature protection, or the device's own name).
    """

    target: str
    at: datetime
    online: bool | None = None
    relay_on: bool | None = None
    watts: float | None = None
    meter_wh: float | None = None
    temperature_c: float | None = None
    fault: str | None = None
    device_meter_wh: float | None = None


class MeterCounter:
    """Turns energy counters that go back to an older value after a restart into counters that only grow.

    Tasmota keeps its total across restarts but goes back to the last value it saved. When a device
    reports less than before, the new figure becomes the base: nothing is added for the drop, so a
    session is never billed negative, and energy counted before the drop is never counted twice.
    """

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, float]] = {}  # target -> (device figure, our total)
        self._floor: dict[str, float] = {}

    def floor(self, target: str, total_wh: float) -> None:
        """Continue above a stored total (after a gateway restart): the first figure never reads lower."""
        self._floor[target] = total_wh

    def update(self, target: str, device_wh: float) -> float:
        """Our total after the device reported `device_wh`."""
        last = self._last.get(target)
        if last is None:
            # Below the stored total, the device went back while we were away: rebase, add nothing.
            total = max(device_wh, self._floor.pop(target, device_wh))
        elif device_wh >= last[0]:
            total = last[1] + (device_wh - last[0])
        else:
            log.info(
                "meter counter went back (device restarted?)",
                extra={"event": "mqtt.meter_reset", "target": target, "was": last[0], "now": device_wh},
            )
            total = last[1]
        self._last[target] = (device_wh, total)
        return total


def payload_number(value) -> float | None:
    """A figure from a device payload: None stays None; anything but an int or float is refused."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"not a number: {value!r}")
    return float(value)


def split_target(target: str) -> tuple[str, str, int | None]:
    """`shelly:pfx/0` → ("shelly", "pfx", 0); `tasmota:plug` → ("tasmota", "plug", None).

    The channel is the part after the last "/" when it is a number (topic prefixes may contain "/").
    """
    kind, sep, rest = target.partition(":")
    if not sep or not rest:
        raise ValueError(f"not a hardware target: {target!r}")
    head, slash, tail = rest.rpartition("/")
    if slash and tail.isdigit() and head:
        return kind, head, int(tail)
    return kind, rest, None


class RelayProtocol(Protocol):
    """A device family on the broker (Shelly Gen2+, Tasmota)."""

    kind: str
    # True when the device's energy counter restarts at 0 after a reboot; False when it goes back to
    # an older saved value (which must not be read as "counting from 0": that would bill it twice).
    counter_restarts_at_zero: bool

    def watch(self, target: str) -> list[str]:
        """Follow a relay channel; returns topics not subscribed before."""

    def subscriptions(self) -> list[str]:
        """Every topic this protocol needs (subscribed again after each reconnect)."""

    def handle(self, topic: str, payload: bytes, at: datetime) -> list[RelayReading]:
        """Readings in one message (raise ValueError on a malformed payload)."""

    async def switch(self, link: MqttLink, target: str, on: bool, cap_seconds: int | None = None) -> None:
        """Switch a channel; raise CommandRejected or CommandUnanswered."""

    async def refresh(self, link: MqttLink, target: str) -> list[RelayReading]:
        """Ask a channel for its whole status (readings returned, or arriving as messages)."""


Sink = Callable[[RelayReading], None]


class MqttLink:
    """One broker connection for all watched relays: subscribe, read, publish, reconnect.

    `run()` loops until cancelled: connect, subscribe, hand each message to the protocol whose
    topics it matches; on a lost broker it waits (1 s, doubling to `max_backoff`, with jitter) and
    connects again. A malformed payload is a log line, never the end of the loop. The sink gets
    every reading and must return at once (no blocking database call inside a message handler).
    """

    def __init__(
        self,
        settings: BrokerSettings,
        protocols: Iterable[RelayProtocol],
        sink: Sink,
        *,
        clock: Callable[[], datetime] = clock_now,
        min_backoff: float = 1.0,
        max_backoff: float = 30.0,
    ):
        self.settings = settings
        self.protocols = {protocol.kind: protocol for protocol in protocols}
        self.sink = sink
        self.clock = clock
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.meters = MeterCounter()
        self.connected = asyncio.Event()
        self.connections = 0
        self._client = None
        self._online: dict[str, bool] = {}  # target -> online as last reported
        self._tasks: set[asyncio.Task] = set()

    @property
    def client_id(self) -> str:
        """Our MQTT client id (also the `src` of Shelly RPC requests)."""
        return self.settings.client_id

    def protocol_for(self, target: str) -> RelayProtocol:
        """The protocol of a target's kind; ValueError for a kind nobody speaks."""
        kind = split_target(target)[0]
        try:
            return self.protocols[kind]
        except KeyError:
            raise ValueError(f"no MQTT protocol for {target!r}") from None

    async def watch(self, target: str) -> None:
        """Follow a relay channel (subscribing at once when connected)."""
        topics = self.protocol_for(target).watch(target)
        client = self._client
        if client is not None and topics:
            for topic in topics:
                await client.subscribe(topic, qos=QOS)

    async def switch(self, target: str, on: bool, cap_seconds: int | None = None) -> None:
        """Switch a channel on (with a device-side cap in seconds) or off."""
        await self.watch(target)
        await self.protocol_for(target).switch(self, target, on, cap_seconds)

    async def publish(self, topic: str, payload: str | bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1; CommandUnanswered when the broker is not connected."""
        client = self._client
        if client is None:
            raise CommandUnanswered("not connected to the MQTT broker")
        try:
            await client.publish(topic, payload, qos=QOS, retain=retain)
        except Exception as exc:  # aiomqtt.MqttError: the connection broke under us
            raise CommandUnanswered(f"publish failed: {exc}") from exc

    def dispatch(self, topic: str, payload: bytes) -> list[RelayReading]:
        """Hand one message to the protocols; their readings go to the sink (see deliver)."""
        at = self.clock()
        readings: list[RelayReading] = []
        for protocol in self.protocols.values():
            try:
                found = protocol.handle(topic, payload, at)
            except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
                log.warning(
                    "ignored malformed MQTT payload on %s: %s",
                    topic,
                    exc,
                    extra={
                        "event": "mqtt.malformed",
                        "topic": topic,
                        "payload": payload[:200].decode("utf-8", "replace"),
                    },
                )
                continue
            readings.extend(found)
        return self.deliver(readings)

    def deliver(self, readings: Iterable[RelayReading]) -> list[RelayReading]:
        """Meters made monotonic where the device needs it, then the sink; a device that came online
        is asked for its whole status (what it pushed while we were away is lost)."""
        delivered = []
        for reading in readings:
            protocol = self.protocol_for(reading.target)
            if reading.meter_wh is not None:
                rebase = not protocol.counter_restarts_at_zero
                reading = replace(
                    reading,
                    device_meter_wh=reading.meter_wh,
                    meter_wh=self.meters.update(reading.target, reading.meter_wh) if rebase else reading.meter_wh,
                )
            if reading.online and not self._online.get(reading.target):
                self._spawn(self._refresh(protocol, reading.target))
            if reading.online is not None:
                self._online[reading.target] = reading.online
            try:
                self.sink(reading)
            except Exception:  # the sink's trouble must not end the broker loop
                log.exception("telemetry sink failed for %s", reading.target)
            delivered.append(reading)
        return delivered

    async def _refresh(self, protocol: RelayProtocol, target: str) -> None:
        try:
            self.deliver(await protocol.refresh(self, target))
        except (PortOffline, PortRejected) as exc:
            log.info("no status from %s: %s", target, exc, extra={"event": "mqtt.refresh_failed", "target": target})

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _topics(self) -> list[str]:
        topics: list[str] = []
        for protocol in self.protocols.values():
            topics.extend(t for t in protocol.subscriptions() if t not in topics)
        return topics

    def _new_client(self):
        import aiomqtt

        settings = self.settings
        return aiomqtt.Client(
            settings.host,
            settings.port,
            username=settings.username,
            password=settings.password,
            identifier=settings.client_id,
            tls_context=settings.tls_context(),
            keepalive=30,
            timeout=10,
        )

    async def run(self) -> None:
        """Stay connected until cancelled; every loss is logged and followed by a reconnect."""
        import aiomqtt

        delay = self.min_backoff
        while True:
            try:
                async with self._new_client() as client:
                    self._client = client  # from here on watch() subscribes new topics itself
                    for topic in self._topics():
                        await client.subscribe(topic, qos=QOS)
                    self.connections += 1
                    self.connected.set()
                    delay = self.min_backoff
                    broker = f"{self.settings.host}:{self.settings.port}"
                    log.info(
                        "connected to the MQTT broker %s", broker, extra={"event": "mqtt.connected", "broker": broker}
                    )
                    async for message in client.messages:
                        payload = (
                            message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
                        )
                        self.dispatch(message.topic.value, payload)
            except (aiomqtt.MqttError, OSError) as exc:
                log.warning(
                    "MQTT broker unreachable or lost (%s); retrying in %.1f s",
                    exc,
                    delay,
                    extra={"event": "mqtt.disconnected", "retry_in": delay},
                )
            finally:
                self._client = None
                self._online.clear()  # after a reconnect every device is asked for its status again
                self.connected.clear()
            await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))
            delay = min(delay * 2, self.max_backoff)


def fail_after(seconds: float, what: str):
    """An asyncio timeout that raises CommandUnanswered naming what was not answered."""
    return _Deadline(seconds, what)


class _Deadline:
    def __init__(self, seconds: float, what: str):
        self.seconds = seconds
        self.what = what
        self._timeout = None

    async def __aenter__(self):
        self._timeout = asyncio.timeout(self.seconds)
        await self._timeout.__aenter__()
        return self

    async def __aexit__(self, exc_type, exc, tb):
        try:
            return await self._timeout.__aexit__(exc_type, exc, tb)
        except TimeoutError:
            raise CommandUnanswered(f"{self.what}: no answer in {self.seconds:g} s") from None


# The gateway's adapters ----------------------------------------------------------------------------

# How often a device the broker holds as connected is reported heard (the store reads a port offline
# after 4 minutes of silence; Tasmota's SENSOR comes every 5 minutes by default).
HEARTBEAT_SECONDS = 60.0
# Below this many watts a closed relay delivers nothing (charger finished or unplugged).
IDLE_WATTS = 1.0


@dataclass
class _Relay:
    """What the adapter knows of one relay channel: the last figures and the session it runs."""

    relay_on: bool = False
    watts: float = 0.0
    fault: str = ""
    meter_wh: float | None = None
    session_ref: str | None = None

    def state(self) -> str:
        """The OCPP-style connector state the supervisor reads."""
        if self.fault:
            return FAULTED
        if self.relay_on:
            return CHARGING if self.watts >= IDLE_WATTS else SUSPENDED_EV
        # Open with our session on it (the device-side cap ran out, or a stop is on its way).
        return SUSPENDED_EV if self.session_ref else AVAILABLE


class MqttHub:
    """The broker link that the Shelly and Tasmota adapters of one gateway share.

    Follows every port bound to a `shelly:` or `tasmota:` target, reports readings and device links
    to the gateway's reporter, and switches relays for the outbox's commands.
    """

    def __init__(self, settings: BrokerSettings):
        self.settings = settings
        self.link: MqttLink | None = None
        self.reporter = None
        self.relays: dict[str, _Relay] = {}
        self.online: dict[str, bool] = {}  # device key -> what the broker last said
        self._tasks: list[asyncio.Task] = []

    async def start(self, reporter) -> None:
        """Connect (once for both adapters), following the ports bound to relays."""
        if self.link is not None:
            return
        from chargeshed.ports.shelly import ShellyProtocol
        from chargeshed.ports.tasmota import TasmotaProtocol

        self.reporter = reporter
        self.link = MqttLink(
            self.settings,
            [ShellyProtocol(self.settings.client_id), TasmotaProtocol()],
            self._on_reading,
            clock=reporter.now,
        )
        await self._follow_bound_ports()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.link.run()), loop.create_task(self._heartbeats())]

    async def close(self) -> None:
        """Stop the link and the heartbeats."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _follow_bound_ports(self) -> None:
        """Watch every bound relay; continue Tasmota totals and running sessions from the store."""
        try:
            bound = await self.reporter.run_db(_bound_relays)
        except Exception:  # database down: commands still watch their targets as they come
            log.warning("cannot list the ports bound to MQTT relays", exc_info=True)
            return
        for target, meter_wh, session_ref in bound:
            if target in self.relays:
                continue
            relay = self.relays[target] = _Relay(session_ref=session_ref)
            if meter_wh is not None:
                relay.meter_wh = meter_wh
                if not self.link.protocol_for(target).counter_restarts_at_zero:
                    self.link.meters.floor(target, meter_wh)
            await self.link.watch(target)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            if self.link.connected.is_set():
                for device, online in list(self.online.items()):
                    if online:
                        self.reporter.link(device, True)
            await self._follow_bound_ports()

    def _on_reading(self, reading: RelayReading) -> None:
        kind, device_id, _channel = split_target(reading.target)
        device = f"{kind}:{device_id}"
        if reading.online is not None and self.online.get(device) != reading.online:
            self.online[device] = reading.online
            self.reporter.link(device, reading.online)
        if not reading.online:
            return
        relay = self.relays.setdefault(reading.target, _Relay())
        if reading.relay_on is not None:
            relay.relay_on = reading.relay_on
        if reading.watts is not None:
            relay.watts = reading.watts
        if reading.fault is not None:
            relay.fault = reading.fault
        if reading.meter_wh is not None:
            relay.meter_wh = reading.meter_wh
        if (reading.relay_on, reading.watts, reading.fault, reading.meter_wh, reading.temperature_c) == (
            None,
            None,
            None,
            None,
            None,
        ):
            return  # only "online": the device's link was reported above
        self.reporter.reading(reading.target, self._stored(relay, reading.temperature_c))

    def _stored(self, relay: _Relay, temperature_c: float | None = None) -> Reading:
        return Reading(
            at=self.reporter.now(),
            state=relay.state(),
            watts=int(round(relay.watts)),
            meter_wh=None if relay.meter_wh is None else int(relay.meter_wh),
            relay_on=relay.relay_on,
            fault=relay.fault,
            temperature_c=temperature_c,
        )

    async def send(self, command) -> None:
        """Carry out one outbox command on a relay (see chargeshed.ports.gateway.Adapter.send)."""
        target = command.target.text
        relay = self.relays.setdefault(target, _Relay())
        if command.kind == "start":
            if relay.session_ref == command.session_ref and relay.relay_on:
                return  # the same start again (a gateway restart resent it): already running
            await self.link.switch(target, True, command.cap_seconds)
            relay.relay_on, relay.fault = True, ""
            relay.session_ref = command.session_ref or None
            if relay.session_ref:
                self.reporter.session_started(
                    target,
                    relay.session_ref,
                    self.reporter.now(),
                    None if relay.meter_wh is None else int(relay.meter_wh),
                )
            self.reporter.reading(target, self._stored(relay))
        elif command.kind == "stop" or (command.kind == "set_available" and not command.available):
            await self.link.switch(target, False)
            ref, relay.session_ref = relay.session_ref, None
            relay.relay_on, relay.watts = False, 0.0
            if ref and command.kind == "stop":
                # The meter at the stop: a device back from offline may not have reported it yet.
                await self._read_meter(target)
                self.reporter.session_stopped(
                    target, ref, self.reporter.now(), None if relay.meter_wh is None else int(relay.meter_wh), "remote"
                )
            self.reporter.reading(target, self._stored(relay))
        else:
            await self.link.watch(target)  # back in service: a relay has nothing to switch

    async def _read_meter(self, target: str) -> None:
        """Ask the channel for its status now (best effort: the stop stands without it)."""
        try:
            self.link.deliver(await self.link.protocol_for(target).refresh(self.link, target))
        except (PortOffline, PortRejected) as exc:
            log.info("no meter at the stop of %s: %s", target, exc, extra={"event": "mqtt.refresh_failed"})


def _bound_relays() -> list[tuple[str, int | None, str | None]]:
    """(target, stored device meter, running session ref) of every port bound to an MQTT relay."""
    from sqlalchemy import select

    from chargeshed.extensions import db
    from chargeshed.ports.models import PortTelemetry

    rows = db.session.execute(
        select(
            PortTelemetry.target, PortTelemetry.meter_wh, PortTelemetry.session_ref, PortTelemetry.session_stopped_at
        ).where(PortTelemetry.scheme.in_(("shelly", "tasmota")))
    )
    return [(target, meter, ref if stopped is None else None) for target, meter, ref, stopped in rows]


class RelayAdapter(Adapter):
    """The gateway adapter of one relay family (`shelly` or `tasmota`) over the shared hub."""

    routed = False  # any gateway reaches a relay through the broker

    def __init__(self, scheme: str, hub: MqttHub):
        self.scheme = scheme
        self.hub = hub

    async def start(self, reporter) -> None:
        """Connect the hub (once for both families)."""
        await self.hub.start(reporter)

    async def send(self, command: Command) -> None:
        """Switch the relay for one outbox command."""
        await self.hub.send(command)

    async def close(self) -> None:
        """Close the hub's link (once for both families)."""
        await self.hub.close()


def adapters(config) -> list[RelayAdapter]:
    """The gateway's Shelly and Tasmota adapters, sharing one broker connection (MQTT_URL …)."""
    hub = MqttHub(BrokerSettings.from_config(config))
    return [RelayAdapter("shelly", hub), RelayAdapter("tasmota", hub)]
