"""A Shelly Gen2+ device (Pro 4PM: four metered switches; Plus Plug S: one) on the real broker.

It follows Shelly's documented MQTT behaviour: JSON-RPC requests on `<prefix>/rpc`, answered on
`<src>/rpc` with the request's id (`result` or `error`); `NotifyStatus` on `<prefix>/events/rpc`
carrying only what changed; the whole switch status on `<prefix>/status/switch:<id>`; `<prefix>/online`
`true` on connect and `false` as the retained last will. `Switch.Set` honours `toggle_after`.

Time is the test's: `advance(seconds)` runs the meters and the toggle timers, then reports.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

from tests.ports.emulators.base import DeviceConnection


@dataclass
class Switch:
    """One metered relay channel."""

    id: int
    output: bool = False
    load_w: float = 0.0  # what the plugged charger draws when the relay is closed
    energy_wh: float = 0.0  # aenergy.total: since boot
    temperature_c: float = 38.5
    errors: list[str] = field(default_factory=list)
    toggle_at: float | None = None  # device time when toggle_after flips the output back
    toggle_after: float | None = None

    @property
    def apower(self) -> float:
        return self.load_w if self.output else 0.0

    def status(self) -> dict:
        status = {
            "id": self.id,
            "source": "MQTT",
            "output": self.output,
            "apower": round(self.apower, 1),
            "voltage": 229.8,
            "current": round(self.apower / 229.8, 3),
            "pf": 0.98 if self.output else 0,
            "aenergy": {"total": round(self.energy_wh, 3), "by_minute": [0, 0, 0], "minute_ts": 1764670000},
            "temperature": {"tC": self.temperature_c, "tF": round(self.temperature_c * 9 / 5 + 32, 1)},
        }
        if self.toggle_at is not None:
            status["timer_started_at"] = 1764670000
            status["timer_duration"] = self.toggle_after
        if self.errors:
            status["errors"] = list(self.errors)
        return status


class ShellyEmulator:
    """A Gen2+ device with `channels` metered switches, reachable at topic prefix `prefix`."""

    def __init__(self, prefix: str, channels: int = 4, *, model: str = "shellypro4pm"):
        self.prefix = prefix
        self.device_id = f"{model}-{prefix[-12:]}"
        self.switches = [Switch(i) for i in range(channels)]
        self.time = 0.0
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.connection = DeviceConnection(
            f"emu-{prefix}", (f"{prefix}/online", "false"), [f"{prefix}/rpc"], self._message, self._announce
        )

    # Connection
    def connect(self) -> ShellyEmulator:
        self.connection.connect()
        return self

    def go_offline(self) -> None:
        """Wi-Fi gone: the broker publishes `online` = false; the device runs on (meters, timers)."""
        self.connection.drop()

    def come_back(self) -> None:
        """Reconnect: `online` = true and the whole status of every switch."""
        self.connection.connect()

    def reboot(self, *, restore_output: bool = False) -> None:
        """Power cycle: offline, energy counters back to 0, timers gone, then online. The relays come
        back open, or as they were with `restore_output` (the "restore last" initial state)."""
        self.connection.drop()
        with self.lock:
            for switch in self.switches:
                switch.output = switch.output and restore_output
                switch.energy_wh, switch.toggle_at, switch.errors = 0.0, None, []
        self.connection.connect()

    def close(self) -> None:
        self.connection.close()

    def _announce(self) -> None:
        self.connection.publish(f"{self.prefix}/online", "true", retain=True)
        for switch in self.switches:
            self.connection.publish(f"{self.prefix}/status/switch:{switch.id}", json.dumps(switch.status()))

    # The test's hands on the hardware
    def plug(self, channel: int, watts: float) -> None:
        """A charger drawing `watts` while the relay is closed (change it to taper the charge)."""
        with self.lock:
            self.switches[channel].load_w = watts

    def advance(self, seconds: float) -> None:
        """Let `seconds` of device time pass, then report what changed (NotifyStatus and full status)."""
        with self.lock:
            end = self.time + seconds
            for switch in self.switches:
                run_until = end
                if switch.output and switch.toggle_at is not None and switch.toggle_at <= end:
                    run_until = switch.toggle_at
                switch.energy_wh += switch.apower * (run_until - self.time) / 3600 if switch.output else 0
                if run_until < end:  # toggle_after ran out: the device opens the relay itself
                    switch.output, switch.toggle_at = False, None
            self.time = end
        self.report()

    def overpower(self, channel: int) -> None:
        """The power protection trips: relay open, `errors` = ["overpower"]."""
        self.protection(channel, "overpower")

    def protection(self, channel: int, error: str) -> None:
        """A protection trips (overpower, overtemp …): relay open, `errors` = [error]."""
        with self.lock:
            switch = self.switches[channel]
            switch.output, switch.toggle_at, switch.errors = False, None, [error]
            if error == "overtemp":
                switch.temperature_c = 96.0
        self.report([channel])

    def report(self, channels: list[int] | None = None) -> None:
        """NotifyStatus (partial: output, apower, aenergy, errors) then status/switch:N (whole)."""
        with self.lock:
            chosen = [s for s in self.switches if channels is None or s.id in channels]
            params = {"ts": 1764670000.0 + self.time}
            for switch in chosen:
                partial = {
                    "id": switch.id,
                    "output": switch.output,
                    "apower": round(switch.apower, 1),
                    "aenergy": {"total": round(switch.energy_wh, 3)},
                }
                if switch.errors:
                    partial["errors"] = list(switch.errors)
                params[f"switch:{switch.id}"] = partial
            statuses = [(s.id, s.status()) for s in chosen]
        self.connection.publish(
            f"{self.prefix}/events/rpc",
            json.dumps(
                {"src": self.device_id, "dst": f"{self.prefix}/events", "method": "NotifyStatus", "params": params}
            ),
        )
        for channel, status in statuses:
            self.connection.publish(f"{self.prefix}/status/switch:{channel}", json.dumps(status))

    def publish_raw(self, suffix: str, payload: bytes | str) -> None:
        """Send anything on one of the device's topics (malformed payload tests)."""
        self.connection.publish(f"{self.prefix}/{suffix}", payload)

    def calls(self, method: str = "Switch.Set") -> list[dict]:
        """The requests received for one method, oldest first."""
        return [frame for frame in list(self.requests) if frame.get("method") == method]

    # RPC
    def _message(self, topic: str, payload: bytes) -> None:
        try:
            frame = json.loads(payload)
            src, request_id, method = frame["src"], frame["id"], frame["method"]
        except (ValueError, KeyError, TypeError):
            return  # a real device drops frames it cannot parse
        self.requests.append(frame)
        params = frame.get("params") or {}
        reply = {"id": request_id, "src": self.device_id, "dst": src}
        changed = None
        with self.lock:
            channel = params.get("id")
            switch = self.switches[channel] if isinstance(channel, int) and 0 <= channel < len(self.switches) else None
            if method in ("Switch.Set", "Switch.GetStatus") and switch is None:
                reply["error"] = {"code": -105, "message": f"Argument 'id', value {channel} not found!"}
            elif method == "Switch.Set":
                reply["result"] = {"was_on": switch.output}
                switch.output = bool(params["on"])
                if switch.output:
                    switch.errors = []
                toggle = params.get("toggle_after")
                switch.toggle_at = self.time + toggle if toggle else None
                switch.toggle_after = toggle
                changed = [switch.id]
            elif method == "Switch.GetStatus":
                reply["result"] = switch.status()
            elif method == "Shelly.GetStatus":
                reply["result"] = {f"switch:{s.id}": s.status() for s in self.switches}
            else:
                reply["error"] = {"code": 404, "message": f"No handler for {method}"}
        self.connection.publish(f"{src}/rpc", json.dumps(reply))
        if changed:
            self.report(changed)
