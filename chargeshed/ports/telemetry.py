"""The telemetry store: what devices pushed, kept per port, written by gateways, read by the supervisor.

Gateways (and their adapters, through `chargeshed.ports.gateway.Reporter`) call:

- `record_readings` / `record_reading`: the latest reading of a port (state, W, meter Wh, relay,
  temperature, fault) with the device's own timestamp. Older timestamps never overwrite newer
  ones. The device meter may restart from zero (reboot): the port's register `energy_wh` then grows
  by what the device counted since the reset, never by a negative amount, and never twice.
- `record_link`: a device came online, went offline, or was heard from (heartbeat).
- `record_session_event`: the device says a session started or stopped (with its meter reading
  and time), e.g. an OCPP StartTransaction/StopTransaction, possibly delivered late.

Ports are addressed by id (int), by code ("T11001", for the simulator) or by hardware target
("shelly:pro4pm-1/2"). These functions flush and never commit: the caller (one gateway message, one
writer batch) owns the transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update

from chargeshed.extensions import db
from chargeshed.ports import targets
from chargeshed.ports.driver import OFFLINE_STATE
from chargeshed.ports.models import DeviceLink, MeterSample, PortTelemetry
from chargeshed.sites.models import Port

log = logging.getLogger(__name__)

# A port not heard from for this long is offline (debounced): shown so, alerted, its session ended.
OFFLINE_AFTER_SECONDS = 4 * 60

STARTED = "started"
STOPPED = "stopped"

PortKey = int | str


@dataclass(frozen=True)
class Reading:
    """One reading as a device pushed it. None means "not in this message" (the stored value stays).

    at: the device's timestamp (naive UTC); use the receive time when the device sends none.
    state: OCPP 1.6 connector status (Available, Preparing, Charging, SuspendedEV, Finishing,
        Faulted, Unavailable). watts: power now. meter_wh: the device's cumulative counter, as sent
        (it may restart from zero). relay_on: the outlet is switched on. fault: a fault code, or ""
        when the device reports no fault. temperature_c: device temperature.
    """

    at: datetime
    state: str | None = None
    watts: int | None = None
    meter_wh: int | None = None
    relay_on: bool | None = None
    fault: str | None = None
    temperature_c: float | None = None


def port_offline(port: Port, now: datetime) -> bool:
    """True when the port has not been heard from for the offline debounce (its recorded state)."""
    if port.ocpp_state == OFFLINE_STATE:
        return True
    seen = port.last_seen_at
    return seen is not None and (now - seen).total_seconds() >= OFFLINE_AFTER_SECONDS


def bind(port: Port, target: str) -> PortTelemetry:
    """Wire a port to a hardware target (validated, stored canonical). Caller commits.

    A new target starts with a blank reading: nothing the old device said applies to the new one.
    Raises targets.TargetError for a malformed target.
    """
    parsed = targets.parse(target)
    port.hardware_target = parsed.text
    row = db.session.get(PortTelemetry, port.id)
    if row is None:
        row = PortTelemetry(port_id=port.id, energy_wh=0, session_start_wh=0)
        db.session.add(row)
    if row.target != parsed.text or row.device != parsed.device:
        for name in (
            "state",
            "fault",
            "temperature_c",
            "meter_wh",
            "reading_at",
            "heard_at",
            "link_changed_at",
            "session_ref",
            "session_started_at",
            "session_stopped_at",
            "session_stop_wh",
            "session_stop_reason",
        ):
            setattr(row, name, None)
        row.watts, row.relay_on, row.link_online = 0, False, False
    row.target, row.scheme, row.device = parsed.text, parsed.scheme, parsed.device
    link = db.session.get(DeviceLink, parsed.device)
    if link is not None:
        row.link_online, row.heard_at = link.online, link.heard_at
    db.session.flush()
    return row


def _rows(keys: Iterable[PortKey]) -> dict[PortKey, PortTelemetry]:
    """The telemetry rows for these keys, locked (PostgreSQL) in port order; created when missing."""
    keys = set(keys)
    ids = {key for key in keys if isinstance(key, int)}
    codes = {key for key in keys if isinstance(key, str) and ":" not in key}
    target_keys = {targets.normalise(key): key for key in keys if isinstance(key, str) and ":" in key}
    port_of: dict[PortKey, int] = {key: key for key in ids}
    if codes:
        for port_id, code in db.session.execute(select(Port.id, Port.code).where(Port.code.in_(codes))):
            port_of[code] = port_id
    if target_keys:
        for port_id, target in db.session.execute(
            select(PortTelemetry.port_id, PortTelemetry.target).where(PortTelemetry.target.in_(target_keys))
        ):
            port_of[target_keys[target]] = port_id
    wanted = sorted(set(port_of.values()))
    if not wanted:
        return {}
    rows = {
        row.port_id: row
        for row in db.session.execute(
            select(PortTelemetry)
            .where(PortTelemetry.port_id.in_(wanted))
            .order_by(PortTelemetry.port_id)
            .with_for_update()
        ).scalars()
    }
    missing = [port_id for port_id in wanted if port_id not in rows]
    if missing:
        for port_id, target in db.session.execute(select(Port.id, Port.hardware_target).where(Port.id.in_(missing))):
            parsed = targets.parse(target or targets.SIM)
            row = PortTelemetry(
                port_id=port_id,
                target=parsed.text,
                scheme=parsed.scheme,
                device=parsed.device,
                energy_wh=0,
                session_start_wh=0,
                watts=0,
                relay_on=False,
                link_online=False,
            )
            db.session.add(row)
            rows[port_id] = row
    return {key: rows[port_id] for key, port_id in port_of.items() if port_id in rows}


def record_readings(items: Iterable[tuple], heard_at: datetime | None = None) -> int:
    """Store a batch of readings (in order); returns how many were newer than what was stored.

    Items are (key, reading) or (key, reading, heard_at) (when each was heard; else `heard_at`, else
    the reading's own time). The rows are read (and locked, in port order) in one query and written
    in one flush: the changed rows go out as one executemany UPDATE, the meter samples as one INSERT.
    Unknown ports or targets are logged and skipped. Caller commits.
    """
    items = [item if len(item) == 3 else (item[0], item[1], None) for item in items]
    rows = _rows(key for key, _reading, _heard in items)
    accepted = 0
    for key, reading, heard in items:
        row = rows.get(key)
        if row is None:
            log.warning("reading for an unknown port or target %s", key, extra={"event": "telemetry.unknown"})
            continue
        accepted += _apply(row, reading, heard or heard_at or reading.at)
    db.session.flush()
    return accepted


def record_reading(key: PortKey, reading: Reading, heard_at: datetime | None = None) -> bool:
    """Store one reading; False when it was older than the stored one (or the port is unknown)."""
    return record_readings([(key, reading)], heard_at) == 1


def _heard(row: PortTelemetry, at: datetime) -> None:
    if row.heard_at is None or at > row.heard_at:
        row.heard_at = at
    if not row.link_online:
        row.link_online, row.link_changed_at = True, at


def _advance_meter(row: PortTelemetry, meter_wh: int) -> None:
    """Move the register by what the device counted since its last value (a reset counts from 0)."""
    if row.meter_wh is not None:
        delta = meter_wh - row.meter_wh
        row.energy_wh = (row.energy_wh or 0) + (delta if delta >= 0 else meter_wh)
    row.meter_wh = meter_wh


def _apply(row: PortTelemetry, reading: Reading, heard_at: datetime) -> bool:
    _heard(row, heard_at)
    if row.reading_at is not None and reading.at < row.reading_at:
        return False  # older than what we hold: the state it describes is over
    newer = row.reading_at is None or reading.at > row.reading_at
    if reading.state is not None:
        row.state = reading.state
    if reading.watts is not None:
        row.watts = max(0, int(reading.watts))
    if reading.relay_on is not None:
        row.relay_on = bool(reading.relay_on)
    if reading.fault is not None:
        row.fault = reading.fault[:80] or None
    if reading.temperature_c is not None:
        row.temperature_c = float(reading.temperature_c)
    if reading.meter_wh is not None:
        if reading.meter_wh < 0:
            log.warning(
                "negative meter reading ignored on port %s", row.port_id, extra={"event": "telemetry.negative_meter"}
            )
        else:
            _advance_meter(row, int(reading.meter_wh))
    row.reading_at = reading.at
    if newer and row.session_ref and row.session_stopped_at is None and reading.meter_wh is not None:
        db.session.add(
            MeterSample(
                port_id=row.port_id,
                session_ref=row.session_ref,
                at=reading.at,
                energy_wh=row.energy_wh,
                meter_wh=row.meter_wh,
                watts=row.watts or 0,
            )
        )
    return newer


def _register_at(row: PortTelemetry, meter_wh: int | None, at: datetime) -> int:
    """The port's register at a device event carrying the device meter (applied if it is the newest)."""
    if meter_wh is None or meter_wh < 0:
        return row.energy_wh or 0
    if row.reading_at is None or at >= row.reading_at:
        _advance_meter(row, int(meter_wh))
        row.reading_at = at
        return row.energy_wh
    # A late event: count back from the newest reading when the counter has not reset in between.
    if row.meter_wh is not None and 0 <= meter_wh <= row.meter_wh:
        return max(0, row.energy_wh - (row.meter_wh - meter_wh))
    return row.energy_wh or 0


def record_session_event(
    key: PortKey,
    event: str,
    at: datetime,
    session_ref: str,
    *,
    meter_wh: int | None = None,
    reason: str | None = None,
    heard_at: datetime | None = None,
) -> bool:
    """The device says the session `session_ref` started or stopped at `at` (device time).

    `meter_wh` is the device meter at that moment (OCPP meterStart/meterStop). A repeated event
    changes nothing; a stop for a session the port is not running is logged and ignored.
    `reason` (stop only): local, remote, unplugged, fault, power_loss, other. Returns True when
    stored. Caller commits.
    """
    row = _rows([key]).get(key)
    if row is None:
        log.warning("session event for an unknown port or target %s", key, extra={"event": "telemetry.unknown"})
        return False
    _heard(row, heard_at or at)
    if event == STARTED:
        if row.session_ref == session_ref:
            return False
        row.session_ref, row.session_started_at = session_ref, at
        row.session_start_wh = _register_at(row, meter_wh, at)
        row.session_stopped_at = row.session_stop_wh = row.session_stop_reason = None
    elif event == STOPPED:
        if row.session_ref != session_ref or row.session_stopped_at is not None:
            if row.session_ref != session_ref:
                log.warning(
                    "stop of session %s not running on port %s",
                    session_ref,
                    row.port_id,
                    extra={"event": "telemetry.unknown_session"},
                )
            return False
        row.session_stopped_at = at
        row.session_stop_wh = max(row.session_start_wh or 0, _register_at(row, meter_wh, at))
        row.session_stop_reason = (reason or "other")[:24]
    else:
        raise ValueError(f"unknown session event {event}")
    db.session.flush()
    return True


def device_key(value: str) -> str:
    """The device key of a target ("ocpp:CP1/2" → "ocpp:CP1") or of a device key itself."""
    try:
        return targets.parse(value).device
    except targets.TargetError:
        scheme, sep, rest = value.partition(":")
        if value == targets.SIM or (sep and scheme in targets.SCHEMES and rest):
            return value
        raise


def record_link(
    device: str, online: bool, at: datetime, *, gateway_id: str | None = None, state: str | None = None
) -> None:
    """A device's link went up or down, or it was heard from (online=True again refreshes last heard).

    `device` is a device key ("ocpp:CP1", "shelly:pro4pm-1") or any target on it. `gateway_id`:
    the gateway now holding the device's connection (commands for it are routed there). `state`:
    the station-wide status, if the device reports one. Caller commits.
    """
    device = device_key(device)
    link = db.session.get(DeviceLink, device)
    if link is None:
        link = DeviceLink(device=device, online=not online)
        db.session.add(link)
    elif not online and gateway_id and link.gateway_id not in (None, gateway_id):
        return  # an old connection closing after the device reconnected to another gateway: newest wins
    if link.online != online:
        link.online, link.changed_at = online, at
    if online:
        if link.heard_at is None or at > link.heard_at:
            link.heard_at = at
        if gateway_id:
            link.gateway_id = gateway_id
    else:
        link.gateway_id = None
    if state is not None:
        link.state = state
    db.session.execute(
        update(PortTelemetry)
        .where(PortTelemetry.device == device, PortTelemetry.link_online != online)
        .values(link_online=online, link_changed_at=at)
        .execution_options(synchronize_session=False)
    )
    if online:
        db.session.execute(
            update(PortTelemetry)
            .where(PortTelemetry.device == device, or_(PortTelemetry.heard_at.is_(None), PortTelemetry.heard_at < at))
            .values(heard_at=at)
            .execution_options(synchronize_session=False)
        )
    db.session.flush()
