"""Hardware targets: which device (and which outlet of it) a port is wired to.

One parser for every place a target is typed or read (CLI, back office, gateway):

- ``sim``                              the built-in simulator (the port's code addresses it)
- ``ocpp:<charge_point_id>/<connector>``  an OCPP 1.6J station's connector (1-based)
- ``shelly:<topic_prefix>/<switch_id>``    a Shelly Gen2+ switch channel (0-based)
- ``tasmota:<topic>[/<relay>]``            a Tasmota relay (1-based, default 1)

A target names a *device* (what connects, goes online and offline: ``ocpp:CP-7``) and a *channel*
on it (``2``). ``parse`` returns both; ``Target.text`` is the canonical form stored on the port.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SIM = "sim"
OCPP = "ocpp"
SHELLY = "shelly"
TASMOTA = "tasmota"
SCHEMES = (SIM, OCPP, SHELLY, TASMOTA)

# Charge point ids: OCPP CiString20-ish identifiers; MQTT topics: no wildcards, no spaces.
_CP_ID = re.compile(r"^[A-Za-z0-9._:-]{1,48}$")
_TOPIC = re.compile(r"^[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*$")
_MAX_TOPIC = 96


class TargetError(ValueError):
    """A hardware target that cannot be parsed; the message says what is wrong."""


@dataclass(frozen=True)
class Target:
    """A parsed hardware target."""

    scheme: str
    device_id: str = ""  # charge point id, Shelly topic prefix, Tasmota topic; "" for sim
    channel: int | None = None  # connector, switch id or relay; None for sim

    @property
    def device(self) -> str:
        """The device key a link state belongs to, e.g. ``ocpp:CP-7`` (``sim`` for the simulator)."""
        return f"{self.scheme}:{self.device_id}" if self.device_id else self.scheme

    @property
    def text(self) -> str:
        """The canonical text form (what is stored on the port)."""
        if self.scheme == SIM:
            return SIM
        return f"{self.device}/{self.channel}"


def parse(value: str) -> Target:
    """Parse a target string; raises TargetError with a plain reason."""
    value = (value or "").strip()
    if value == SIM:
        return Target(SIM)
    scheme, sep, rest = value.partition(":")
    if not sep or scheme not in SCHEMES[1:]:
        raise TargetError(
            "target must be sim, ocpp:<id>/<connector>, shelly:<prefix>/<switch> or tasmota:<topic>[/<relay>]"
        )
    if scheme == OCPP:
        device_id, slash, channel = rest.rpartition("/")
        if not slash or not _CP_ID.match(device_id):
            raise TargetError("ocpp target: ocpp:<charge_point_id>/<connector>")
        return Target(OCPP, device_id, _number(channel, 1, 99, "connector"))
    if scheme == SHELLY:
        device_id, slash, channel = rest.rpartition("/")
        if not slash or not _topic_ok(device_id):
            raise TargetError("shelly target: shelly:<topic_prefix>/<switch_id>")
        return Target(SHELLY, device_id, _number(channel, 0, 15, "switch id"))
    device_id, relay = rest, 1
    head, slash, tail = rest.rpartition("/")
    if slash and tail.isdigit():
        device_id, relay = head, _number(tail, 1, 8, "relay")
    if not _topic_ok(device_id):
        raise TargetError("tasmota target: tasmota:<topic>[/<relay>]")
    return Target(TASMOTA, device_id, relay)


def normalise(value: str) -> str:
    """The canonical form of a target string (raises TargetError)."""
    return parse(value).text


def _topic_ok(topic: str) -> bool:
    return bool(topic) and len(topic) <= _MAX_TOPIC and bool(_TOPIC.match(topic))


def _number(text: str, low: int, high: int, what: str) -> int:
    if not text.isdigit() or not low <= int(text) <= high:
        raise TargetError(f"{what} must be a number from {low} to {high}")
    return int(text)
