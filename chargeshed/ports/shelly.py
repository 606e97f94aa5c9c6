"""Shelly Gen2+ relays (Pro 4PM, Plus 1PM, Plus Plug S …) over MQTT: one switch channel is one port.

Target `shelly:<topic_prefix>/<switch_id>` (the prefix defaults to the device id, e.g.
`shellypro4pm-a8032ab12345`). What the device must have on (its MQTT settings): RPC over MQTT,
RPC status notifications (`<prefix>/events/rpc`) and, better still, generic status updates
(`<prefix>/status/switch:N`, the whole status).

- Commands are JSON-RPC frames on `<prefix>/rpc` with `src` = our client id; the device answers on
  `<src>/rpc` with the same `id` and a `result` or an `error`.
- `Switch.Set {"id": N, "on": true, "toggle_after": S}`: the device switches itself off after S
  seconds, so a charge ends on time even when the server or the network is gone.
- Readings: `output`, `apower` (W), `aenergy.total` (Wh since boot), `temperature.tC`, `errors`
  (overpower and overcurrent: fault `overload`;
  overtemp: `overheat`; others as named); `<prefix>/online` is `true`/`false` (its last will).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from datetime import datetime

from chargeshed.ports.driver import FAULT_OVERHEAT, FAULT_OVERLOAD
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

KIND = "shelly"
# Shelly's switch error names → our fault codes (others, e.g. overvoltage, are kept as they are).
ERRORS = {"overpower": FAULT_OVERLOAD, "overcurrent": FAULT_OVERLOAD, "overtemp": FAULT_OVERHEAT}


def target(prefix: str, switch_id: int) -> str:
    """The hardware target of one switch channel."""
    return f"{KIND}:{prefix}/{switch_id}"


def parse_target(value: str) -> tuple[str, int]:
    """(topic prefix, switch id) of a `shelly:` target; ValueError when it is not one."""
    kind, prefix, channel = split_target(value)
    if kind != KIND or channel is None:
        raise ValueError(f"a Shelly target is shelly:<topic_prefix>/<switch_id>, not {value!r}")
    return prefix, channel


def switch_reading(target_: str, status: dict, at: datetime, *, full: bool) -> RelayReading:
    """A reading from a switch status object (`full`: a missing `errors` means no error)."""
    if not isinstance(status, dict):
        raise ValueError("switch status is not an object")
    energy = status.get("aenergy")
    temperature = status.get("temperature")
    errors = status.get("errors")
    if errors is not None and not isinstance(errors, list):
        raise ValueError("errors is not a list")
    codes = dict.fromkeys(ERRORS.get(str(e), str(e)) for e in errors or ())
    fault = ",".join(codes) if codes else ("" if errors is not None or full else None)
    output = status.get("output")
    return RelayReading(
        target=target_,
        at=at,
        online=True,
        relay_on=bool(output) if output is not None else None,
        watts=payload_number(status.get("apower")),
        meter_wh=payload_number(energy.get("total")) if isinstance(energy, dict) else None,
        temperature_c=payload_number(temperature.get("tC")) if isinstance(temperature, dict) else None,
        fault=fault,
    )


def _split_device_topic(topic: str) -> tuple[str | None, str]:
    """(prefix, what) for `<prefix>/online`, `<prefix>/events/rpc` and `<prefix>/status/switch:N`."""
    for suffix in ("/online", "/events/rpc"):
        if topic.endswith(suffix):
            return topic[: -len(suffix)], suffix[1:]
    head, _, leaf = topic.rpartition("/status/")
    if head and leaf.startswith("switch:"):
        return head, "status/" + leaf
    return None, ""


class ShellyProtocol:
    """Shelly Gen2+ over MQTT: RPC with replies matched by id, NotifyStatus and status topics, online."""

    kind = KIND
    counter_restarts_at_zero = True  # aenergy.total counts since boot

    def __init__(self, client_id: str, *, timeout: float = COMMAND_TIMEOUT_SECONDS):
        self.src = client_id
        self.timeout = timeout
        self.channels: dict[str, set[int]] = {}  # topic prefix -> watched switch ids
        self.online: dict[str, bool] = {}
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}

    @property
    def reply_topic(self) -> str:
        """Where devices answer our requests."""
        return f"{self.src}/rpc"

    def watch(self, value: str) -> list[str]:
        """Follow a switch channel; the device's topics when it is new."""
        prefix, channel = parse_target(value)
        known = prefix in self.channels
        self.channels.setdefault(prefix, set()).add(channel)
        return [] if known else self._device_topics(prefix)

    @staticmethod
    def _device_topics(prefix: str) -> list[str]:
        return [f"{prefix}/online", f"{prefix}/events/rpc", f"{prefix}/status/+"]

    def subscriptions(self) -> list[str]:
        """Our reply topic and every watched device's topics."""
        topics = [self.reply_topic]
        for prefix in self.channels:
            topics.extend(self._device_topics(prefix))
        return topics

    def handle(self, topic: str, payload: bytes, at: datetime) -> list[RelayReading]:
        """Readings from one message; RPC replies complete the waiting command."""
        if topic == self.reply_topic:
            self._reply(json.loads(payload))
            return []
        prefix, rest = _split_device_topic(topic)
        channels = self.channels.get(prefix) if prefix else None
        if not channels:
            return []
        if rest == "online":
            return self._online(prefix, channels, payload, at)
        if rest == "events/rpc":
            return self._notification(prefix, channels, json.loads(payload), at)
        channel = int(rest.removeprefix("status/switch:"))
        if channel not in channels:
            return []
        self.online[prefix] = True
        return [switch_reading(target(prefix, channel), json.loads(payload), at, full=True)]

    def _online(self, prefix: str, channels: set[int], payload: bytes, at: datetime) -> list[RelayReading]:
        text = payload.decode().strip().lower()
        if text not in ("true", "false"):
            raise ValueError(f"online is {text!r}, not true/false")
        self.online[prefix] = text == "true"
        return [RelayReading(target=target(prefix, c), at=at, online=self.online[prefix]) for c in sorted(channels)]

    def _notification(self, prefix: str, channels: set[int], frame: dict, at: datetime) -> list[RelayReading]:
        if not isinstance(frame, dict):
            raise ValueError("notification is not an object")
        method = frame.get("method")
        if method not in ("NotifyStatus", "NotifyFullStatus"):
            return []  # NotifyEvent (button pushes, scripts …) says nothing about power or meter
        params = frame["params"]
        if not isinstance(params, dict):
            raise ValueError("params is not an object")
        self.online[prefix] = True
        readings = []
        for channel in sorted(channels):
            status = params.get(f"switch:{channel}")
            if status is not None:
                readings.append(switch_reading(target(prefix, channel), status, at, full=method == "NotifyFullStatus"))
        return readings

    def _reply(self, frame: dict) -> None:
        if not isinstance(frame, dict) or not isinstance(frame.get("id"), int):
            raise ValueError("RPC reply without a numeric id")
        future = self._pending.pop(frame["id"], None)
        if future is None or future.done():
            log.info(
                "RPC reply for a request no longer waiting (id %s)",
                frame["id"],
                extra={"event": "shelly.late_reply", "rpc_id": frame["id"]},
            )
            return
        if "error" in frame:
            error = frame["error"] if isinstance(frame["error"], dict) else {"message": str(frame["error"])}
            future.set_exception(CommandRejected(f"{error.get('code', '')} {error.get('message', '')}".strip()))
        else:
            future.set_result(frame.get("result"))

    async def call(self, link: MqttLink, prefix: str, method: str, params: dict) -> dict | None:
        """One RPC: publish the request, wait for the reply with the same id (or time out)."""
        request_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        frame = {"id": request_id, "src": self.src, "method": method, "params": params}
        try:
            async with fail_after(self.timeout, f"{prefix} {method}"):
                await link.publish(f"{prefix}/rpc", json.dumps(frame, separators=(",", ":")))
                return await future
        finally:
            self._pending.pop(request_id, None)

    async def refresh(self, link: MqttLink, value: str) -> list[RelayReading]:
        """Switch.GetStatus: the channel's whole status (after it came online)."""
        prefix, channel = parse_target(value)
        status = await self.call(link, prefix, "Switch.GetStatus", {"id": channel})
        return [switch_reading(value, status, link.clock(), full=True)]

    async def switch(self, link: MqttLink, value: str, on: bool, cap_seconds: int | None = None) -> None:
        """Switch.Set; switching on carries `toggle_after` = the paid time (the device-side cap)."""
        prefix, channel = parse_target(value)
        if self.online.get(prefix) is False:
            raise CommandUnanswered(f"{prefix} is offline")
        params: dict = {"id": channel, "on": on}
        if on and cap_seconds:
            params["toggle_after"] = int(cap_seconds)
        await self.call(link, prefix, "Switch.Set", params)
