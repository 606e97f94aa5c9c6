"""A Tasmota metered plug or relay (Sonoff POW: one relay) on the real broker, default full topic.

Following Tasmota's documented MQTT behaviour: `cmnd/<topic>/POWER<n>` ON/OFF/TOGGLE (empty = query)
answered on `stat/<topic>/RESULT` `{"POWER":"ON"}` (one relay; `POWER<n>` with several) and
`stat/<topic>/POWER<n>`; `cmnd/<topic>/PulseTime<n>` (112–64900 = seconds + 100, 1–111 tenths) answered
`{"PulseTime1":{"Set":…,"Remaining":…}}`; unknown commands `{"Command":"Unknown"}`;
`tele/<topic>/SENSOR` with ENERGY (Total kWh, Power W; lists on multi-channel meters),
`tele/<topic>/STATE`, and `tele/<topic>/LWT` `Online` / `Offline` (retained last will). The energy
total survives a restart as its last saved value (saved every hour), so after a reboot it goes back
a little. MaxPower protection reports `{"MaxPowerReached":"…W"}`.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

from tests.ports.emulators.base import DeviceConnection


@dataclass
class Relay:
    number: int
    on: bool = False
    load_w: float = 0.0
    total_wh: float = 0.0
    saved_wh: float = 0.0  # what flash holds (Tasmota saves the total periodically)
    pulse_time: int = 0
    off_at: float | None = None

    @property
    def power(self) -> float:
        return self.load_w if self.on else 0.0


def pulse_seconds(value: int) -> float:
    """How long a PulseTime setting keeps the relay on."""
    return 0.0 if value <= 0 else value / 10 if value <= 111 else value - 100


class TasmotaEmulator:
    """A device with `relays` metered relays at MQTT topic `topic`."""

    def __init__(self, topic: str, relays: int = 1):
        self.topic = topic
        self.relays = [Relay(n) for n in range(1, relays + 1)]
        self.time = 0.0
        self.commands: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.connection = DeviceConnection(
            f"emu-{topic}", (f"tele/{topic}/LWT", "Offline"), [f"cmnd/{topic}/+"], self._message, self._announce
        )

    @property
    def switching(self) -> list[tuple[str, str]]:
        """The commands that set something (queries and Status requests left out), oldest first."""
        return [(c, a) for c, a in list(self.commands) if a and c.upper() != "STATUS"]

    def connect(self) -> TasmotaEmulator:
        self.connection.connect()
        return self

    def go_offline(self) -> None:
        """Wi-Fi gone: the broker publishes LWT Offline; the relay and PulseTime run on."""
        self.connection.drop()

    def come_back(self) -> None:
        self.connection.connect()

    def reboot(self) -> None:
        """Power cycle: relays off, the energy total back to its last saved value, then online."""
        self.connection.drop()
        with self.lock:
            for relay in self.relays:
                relay.on, relay.off_at, relay.total_wh = False, None, relay.saved_wh
        self.connection.connect()

    def save_totals(self) -> None:
        """What Tasmota does every hour: write the energy totals to flash."""
        with self.lock:
            for relay in self.relays:
                relay.saved_wh = relay.total_wh

    def close(self) -> None:
        self.connection.close()

    def _announce(self) -> None:
        self.connection.publish(f"tele/{self.topic}/LWT", "Online", retain=True)
        self.connection.publish(f"tele/{self.topic}/STATE", json.dumps(self._state()))

    def _key(self, relay: Relay) -> str:
        return "POWER" if len(self.relays) == 1 else f"POWER{relay.number}"

    def _state(self) -> dict:
        state = {"Time": "2026-12-02T10:00:00", "Uptime": "0T00:00:10", "Heap": 25}
        for relay in self.relays:
            state[self._key(relay)] = "ON" if relay.on else "OFF"
        return state

    # The test's hands on the hardware
    def plug(self, number: int, watts: float) -> None:
        with self.lock:
            self.relays[number - 1].load_w = watts

    def advance(self, seconds: float) -> None:
        """Let device time pass (meters, PulseTime), then publish SENSOR like at the TelePeriod."""
        switched_off = []
        with self.lock:
            end = self.time + seconds
            for relay in self.relays:
                run_until = min(end, relay.off_at) if relay.on and relay.off_at is not None else end
                if relay.on:
                    relay.total_wh += relay.power * (run_until - self.time) / 3600
                if run_until < end or (relay.on and relay.off_at is not None and relay.off_at <= end):
                    relay.on, relay.off_at = False, None
                    switched_off.append(relay)
            self.time = end
        for relay in switched_off:
            self._announce_power(relay)
        self.sensor()

    def sensor(self) -> None:
        """tele/<topic>/SENSOR with the ENERGY block."""
        self.connection.publish(f"tele/{self.topic}/SENSOR", json.dumps(self._sensors()))

    def _sensors(self) -> dict:
        with self.lock:
            many = len(self.relays) > 1
            power = [round(r.power) for r in self.relays]
            total = [round(r.total_wh / 1000, 3) for r in self.relays]
            energy = {
                "TotalStartTime": "2026-01-01T00:00:00",
                "Total": total if many else total[0],
                "Yesterday": 0.0,
                "Today": total if many else total[0],
                "Period": 0,
                "Power": power if many else power[0],
                "ApparentPower": power if many else power[0],
                "ReactivePower": 0,
                "Factor": 0.98,
                "Voltage": 229,
                "Current": round(sum(power) / 229, 3),
            }
        return {"Time": "2026-12-02T10:00:00", "ENERGY": energy}

    def max_power_reached(self, number: int = 1) -> None:
        """MaxPower protection trips: the relay opens and says why."""
        with self.lock:
            relay = self.relays[number - 1]
            relay.on, relay.off_at = False, None
            watts = round(relay.load_w)
        self.connection.publish(f"stat/{self.topic}/RESULT", json.dumps({"MaxPowerReached": f"{watts}W"}))
        self._announce_power(relay)

    def publish_raw(self, topic: str, payload: bytes | str) -> None:
        self.connection.publish(topic, payload)

    def _announce_power(self, relay: Relay) -> None:
        key = self._key(relay)
        value = "ON" if relay.on else "OFF"
        self.connection.publish(f"stat/{self.topic}/RESULT", json.dumps({key: value}))
        self.connection.publish(f"stat/{self.topic}/{key}", value)

    def _message(self, topic: str, payload: bytes) -> None:
        command = topic.rsplit("/", 1)[-1]
        argument = payload.decode(errors="replace").strip()
        self.commands.append((command, argument))
        upper = command.upper()
        name = upper.rstrip("0123456789")
        number = int(upper[len(name) :] or 1)
        if upper == "STATUS" and argument == "10":
            self.connection.publish(f"stat/{self.topic}/STATUS10", json.dumps({"StatusSNS": self._sensors()}))
            return
        if name not in ("POWER", "PULSETIME") or not 1 <= number <= len(self.relays):
            self.connection.publish(f"stat/{self.topic}/RESULT", json.dumps({"Command": "Unknown"}))
            return
        with self.lock:
            relay = self.relays[number - 1]
            if name == "PULSETIME":
                if argument:
                    relay.pulse_time = int(argument)
                answer = {f"PulseTime{number}": {"Set": relay.pulse_time, "Remaining": relay.pulse_time}}
            else:
                wanted = {
                    "ON": True,
                    "1": True,
                    "OFF": False,
                    "0": False,
                    "TOGGLE": not relay.on,
                    "2": not relay.on,
                    "": relay.on,
                }.get(argument.upper())
                if wanted is None:
                    answer = {"Command": "Error"}
                else:
                    if wanted and not relay.on and relay.pulse_time:
                        relay.off_at = self.time + pulse_seconds(relay.pulse_time)
                    if not wanted:
                        relay.off_at = None
                    relay.on = wanted
                    answer = None
        if answer is not None:
            self.connection.publish(f"stat/{self.topic}/RESULT", json.dumps(answer))
        else:
            self._announce_power(relay)
