"""Tasmota metered plugs and relays (Sonoff POW …) over MQTT: one relay is one port.

Target `tasmota:<topic>[/<relay>]` (relay 1 when left out), with Tasmota's default full topic
`%prefix%/%topic%/`:

- `cmnd/<topic>/POWER<n>` `ON` / `OFF`; the answer is `stat/<topic>/RESULT` `{"POWER<n>":"ON"}` (a
  one-relay device says `POWER`) and `stat/<topic>/POWER<n>`.
- `cmnd/<topic>/PulseTime<n>` is the device-side cap, set before switching on: values 112–64900 mean
  (value − 100) seconds, 1–111 tenths of a second, 0 none. The relay opens by itself when it runs out.
- `tele/<topic>/SENSOR` every TelePeriod: `ENERGY.Total` (kWh), `ENERGY.Power` (W; lists on
  multi-channel meters); `tele/<topic>/STATE` relay states; `tele/<topic>/LWT` `Online`/`Offline`.
- `{"MaxPowerReached":"…W"}` (MaxPower protection cut the relay) is an `overload` fault.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from datetime import datetime

from chargeshed.ports.driver import FAULT_OVERLOAD
from chargeshed.ports.mqtt import (
    COMMAND_TIMEOUT_SECONDS,
    CommandRejected,
    CommandUnanswered,
    MqttLink,
    RelayReading,
    fail_after,
    payload_number,
    split_target,
)

log = logging.getLogger(__name__)

KIND = "tasmota"
# PulseTime's range in whole seconds (values 112..64900 = seconds + 100).
PULSE_MIN_SECONDS = 12
PULSE_MAX_SECONDS = 64_800


def target(topic: str, relay: int = 1) -> str:
    """The hardware target of one relay."""
    return f"{KIND}:{topic}/{relay}"


def parse_target(value: str) -> tuple[str, int]:
    """(topic, relay number from 1) of a `tasmota:` target; ValueError when it is not one."""
    kind, topic, relay = split_target(value)
    if kind != KIND or "+" in topic or "#" in topic:
        raise ValueError(f"a Tasmota target is tasmota:<topic>[/<relay>], not {value!r}")
    relay = 1 if relay is None else relay
    if relay < 1:
        raise ValueError("Tasmota relays are numbered from 1")
    return topic, relay


def pulse_time_value(seconds: float | None) -> int:
    """The PulseTime setting that opens the relay after `seconds` (0 = no cap; capped at 18 h)."""
    if not seconds or seconds <= 0:
        return 0
    if seconds < PULSE_MIN_SECONDS:
        return max(1, min(111, round(seconds * 10)))
    return int(min(seconds, PULSE_MAX_SECONDS)) + 100


def _power_state(value) -> bool:
    text = str(value).strip().upper()
    if text in ("ON", "1"):
        return True
    if text in ("OFF", "0"):
        return False
    raise ValueError(f"power state {value!r} is not ON/OFF")


def _channel_value(value, relay: int) -> float | None:
    """A figure for one relay from a scalar (the device's only meter: relay 1) or a per-channel list."""
    if isinstance(value, list):
        value = value[relay - 1] if relay <= len(value) else None
    elif relay != 1:
        return None
    return payload_number(value)


class TasmotaProtocol:
    """Tasmota over MQTT: POWER commands answered on RESULT, SENSOR/STATE telemetry, LWT, PulseTime."""

    kind = KIND
    counter_restarts_at_zero = False  # ENERGY.Total survives a restart as its last saved value

    def __init__(self, *, timeout: float = COMMAND_TIMEOUT_SECONDS):
        self.timeout = timeout
        self.relays: dict[str, set[int]] = {}  # topic -> watched relays
        self.online: dict[str, bool] = {}
        # (topic, command key) -> futures waiting for the answer, each with the value it waits for
        self._waiters: dict[tuple[str, str], list[tuple[asyncio.Future, object]]] = {}
        self._sent_at: dict[asyncio.Future, int] = {}  # order of sending, to pin an "Unknown" on one
        self._sequence = itertools.count()

    def watch(self, value: str) -> list[str]:
        """Follow a relay; the device's topics when it is new."""
        topic, relay = parse_target(value)
        known = topic in self.relays
        self.relays.setdefault(topic, set()).add(relay)
        return [] if known else self._device_topics(topic)

    @staticmethod
    def _device_topics(topic: str) -> list[str]:
        return [f"tele/{topic}/LWT", f"tele/{topic}/SENSOR", f"tele/{topic}/STATE", f"stat/{topic}/+"]

    def subscriptions(self) -> list[str]:
        """Every watched device's topics."""
        return [t for topic in self.relays for t in self._device_topics(topic)]

    def handle(self, topic: str, payload: bytes, at: datetime) -> list[RelayReading]:
        """Readings from one message; RESULT answers complete the waiting command."""
        prefix, _, rest = topic.partition("/")
        device, _, leaf = rest.rpartition("/")
        if prefix not in ("tele", "stat") or device not in self.relays:
            return []
        relays = self.relays[device]
        if prefix == "tele" and leaf == "LWT":
            text = payload.decode().strip().lower()
            if text not in ("online", "offline"):
                raise ValueError(f"LWT is {text!r}, not Online/Offline")
            self.online[device] = text == "online"
            return [RelayReading(target=target(device, r), at=at, online=self.online[device]) for r in sorted(relays)]
        self.online[device] = True
        if prefix == "tele" and leaf == "SENSOR":
            return self._sensor(device, relays, json.loads(payload), at)
        if prefix == "tele" and leaf == "STATE":
            return self._states(device, relays, json.loads(payload), at)
        if prefix == "stat" and leaf == "RESULT":
            return self._result(device, relays, json.loads(payload), at)
        if prefix == "stat" and leaf == "STATUS10":  # answer to `Status 10`: the sensors, ENERGY included
            status = json.loads(payload)
            return self._sensor(device, relays, status.get("StatusSNS", {}) if isinstance(status, dict) else None, at)
        if prefix == "stat" and leaf.upper().startswith("POWER"):
            return self._states(device, relays, {leaf.upper(): payload.decode()}, at)
        return []

    def _sensor(self, device: str, relays: set[int], data: dict, at: datetime) -> list[RelayReading]:
        if not isinstance(data, dict):
            raise ValueError("SENSOR is not an object")
        energy = data.get("ENERGY")
        if energy is None:
            return []
        if not isinstance(energy, dict):
            raise ValueError("ENERGY is not an object")
        readings = []
        for relay in sorted(relays):
            watts = _channel_value(energy.get("Power"), relay)
            total_kwh = _channel_value(energy.get("Total"), relay)
            if watts is None and total_kwh is None:
                continue
            readings.append(
                RelayReading(
                    target=target(device, relay),
                    at=at,
                    online=True,
                    watts=watts,
                    meter_wh=None if total_kwh is None else round(total_kwh * 1000, 3),
                )
            )
        return readings

    def _states(self, device: str, relays: set[int], data: dict, at: datetime) -> list[RelayReading]:
        if not isinstance(data, dict):
            raise ValueError("state is not an object")
        readings = []
        for key, value in data.items():
            relay = self._relay_of(key)
            if relay is None:
                continue
            on = _power_state(value)
            self._resolve(device, key.upper(), on)
            if relay == 1:
                self._resolve(device, "POWER1" if key.upper() == "POWER" else "POWER", on)
            if relay in relays:
                readings.append(
                    RelayReading(
                        target=target(device, relay), at=at, online=True, relay_on=on, fault="" if on else None
                    )
                )
        return readings

    def _result(self, device: str, relays: set[int], data: dict, at: datetime) -> list[RelayReading]:
        if not isinstance(data, dict):
            raise ValueError("RESULT is not an object")
        if str(data.get("Command", "")).lower() == "unknown":
            self._reject(device, "the device did not know the command")
            return []
        readings = self._states(device, relays, {k: v for k, v in data.items() if self._relay_of(k)}, at)
        for key, value in data.items():
            if key.upper().startswith("PULSETIME"):
                self._resolve(device, key.upper(), value)
            elif key == "MaxPowerReached" and 1 in relays:
                readings.append(
                    RelayReading(target=target(device, 1), at=at, online=True, relay_on=False, fault=FAULT_OVERLOAD)
                )
        return readings

    @staticmethod
    def _relay_of(key: str) -> int | None:
        upper = key.upper()
        if upper == "POWER":
            return 1
        if upper.startswith("POWER") and upper[5:].isdigit():
            return int(upper[5:])
        return None

    def _resolve(self, device: str, key: str, value) -> None:
        """Answer the waiters for `key` that wait for this value (or for any answer)."""
        waiting = self._waiters.get((device, key), [])
        for future, expected in list(waiting):
            if expected is None or expected == value:
                waiting.remove((future, expected))
                if not future.done():
                    future.set_result(value)

    def _reject(self, device: str, reason: str) -> None:
        """Fail the oldest command waiting on the device (Tasmota answers its commands in order)."""
        pending = [
            (future, key)
            for key, waiting in self._waiters.items()
            if key[0] == device
            for future, _expected in waiting
            if not future.done()
        ]
        if pending:
            future, _key = min(pending, key=lambda item: self._sent_at.get(item[0], 0))
            future.set_exception(CommandRejected(reason))

    async def command(self, link: MqttLink, device: str, command: str, payload: str, expect=None):
        """Publish `cmnd/<topic>/<command>` and wait for the RESULT that carries that command's key
        (with the value `expect`, when given: a query's answer in flight must not count)."""
        future = asyncio.get_running_loop().create_future()
        key = (device, command.upper())
        entry = (future, expect)
        self._waiters.setdefault(key, []).append(entry)
        self._sent_at[future] = next(self._sequence)
        try:
            async with fail_after(self.timeout, f"{device} {command}"):
                await link.publish(f"cmnd/{device}/{command}", payload)
                return await future
        finally:
            self._sent_at.pop(future, None)
            waiting = self._waiters.get(key)
            if waiting is not None:
                if entry in waiting:
                    waiting.remove(entry)
                if not waiting:
                    del self._waiters[key]

    async def refresh(self, link: MqttLink, value: str) -> list[RelayReading]:
        """Query the relay (empty POWER<n>) and the meter (`Status 10`); the answers arrive as messages."""
        device, relay = parse_target(value)
        await link.publish(f"cmnd/{device}/STATUS", "10")
        await self.command(link, device, f"POWER{relay}", "")
        return []

    async def switch(self, link: MqttLink, value: str, on: bool, cap_seconds: int | None = None) -> None:
        """PulseTime (when switching on) then POWER; the relay's answer must match what was asked."""
        device, relay = parse_target(value)
        if self.online.get(device) is False:
            raise CommandUnanswered(f"{device} is offline")
        if on:
            await self.command(link, device, f"PulseTime{relay}", str(pulse_time_value(cap_seconds)))
        await self.command(link, device, f"POWER{relay}", "ON" if on else "OFF", expect=on)
