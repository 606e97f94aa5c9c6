"""The supervisor: one idempotent tick reads the stored telemetry, applies the rules, settles.

It never talks to hardware: devices push readings into the telemetry store (through a gateway, or
the in-process simulator) and commands go out through the outbox. Calling tick twice with the same
`now` changes nothing the second time. A tick issues a fixed number of queries whatever the number
of ports: ports with their telemetry and live sessions are read as plain rows, computed in Python,
and only what changed is written back, in batches. Live sessions are written with conditional
UPDATEs (`... AND state IN ('pending', 'charging')`), so a session a resident stopped meanwhile is
never overwritten; every transition goes through the session services.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import String, bindparam, case, cast, or_, select, text, update

from chargeshed.charging import late_meter, occupancy
from chargeshed.charging import sessions as svc
from chargeshed.charging.models import CHARGING, LIVE_STATES, PENDING, ChargeSession
from chargeshed.charging.tariff import Tariff as TariffRules
from chargeshed.charging.tariff import average_watts
from chargeshed.config import START_TIMEOUT_SECONDS
from chargeshed.extensions import db
from chargeshed.ports import alerts, outbox
from chargeshed.ports.driver import AVAILABLE, FAULT_OVERHEAT, FAULT_OVERLOAD, FAULTED, OFFLINE_STATE
from chargeshed.ports.models import CMD_START, FAILED, REJECTED, DeviceLink, PortCommand, PortEvent, PortTelemetry
from chargeshed.ports.telemetry import OFFLINE_AFTER_SECONDS
from chargeshed.sites.models import PORT_RETIRED, Port

log = logging.getLogger(__name__)

# PostgreSQL advisory lock held for the reading phase, so two workers never supervise at once.
SUPERVISOR_LOCK = 0x43534855

_PORT_COLUMNS = ("id", "code", "status", "ocpp_state", "watts", "fault", "last_seen_at", "state_changed_at")
_TELEMETRY_COLUMNS = (
    "state",
    "watts",
    "relay_on",
    "fault",
    "energy_wh",
    "heard_at",
    "link_online",
    "session_ref",
    "session_start_wh",
    "session_stopped_at",
    "session_stop_wh",
    "session_stop_reason",
)
_SESSION_COLUMNS = (
    "id",
    "port_id",
    "state",
    "created_at",
    "confirmed_at",
    "rules",
    "watts",
    "energy_wh",
    "tier_watts",
    "bucket_started_at",
    "bucket_start_wh",
    "low_power_since",
)
_MEASURED = ("watts", "energy_wh", "tier_watts", "bucket_started_at", "bucket_start_wh", "low_power_since")
_PORT_WRITTEN = ("ocpp_state", "watts", "fault", "state_changed_at", "last_seen_at")

# A device that stopped a session by itself (reason as the adapter reports it) → our end reason.
DEVICE_STOP_REASONS = {
    "local": svc.USER_STOP,
    "remote": svc.STAFF_STOP,
    "unplugged": svc.UNPLUGGED,
    "fault": svc.PORT_FAULT,
    "power_loss": svc.OFFLINE,
    "other": svc.PORT_FAULT,
}


@dataclass
class TickReport:
    """What one tick did, for logs and tests."""

    ports_read: int = 0
    confirmed: int = 0
    ended: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    commands: int = 0  # commands delivered in the round (the in-process simulator's rounds count them)
    alerts: int = 0  # alerts raised or cleared
    skipped: bool = False  # another supervisor was mid-tick
    settle_errors: int = 0  # settlements that failed (each rolled back alone; retried next tick)
    late_settled: int = 0  # sessions ended offline, billed from their device's meter once it came back

    @property
    def busy(self) -> bool:
        """True when the tick changed something worth logging."""
        return bool(self.ended or self.failed or self.confirmed or self.commands or self.alerts or self.late_settled)

    def add(self, other: TickReport) -> None:
        """Fold another tick of the same round into this report."""
        self.confirmed += other.confirmed
        self.failed += other.failed
        self.commands += other.commands
        self.alerts += other.alerts
        self.settle_errors += other.settle_errors
        self.late_settled += other.late_settled
        for reason, count in other.ended.items():
            self.ended[reason] = self.ended.get(reason, 0) + count


class _Row:
    """A plain, mutable copy of a database row (ports and live sessions are read without the ORM)."""

    NAMES: tuple[str, ...] = ()

    def __init__(self, values):
        self.__dict__.update(zip(self.NAMES, values, strict=True))
        self._saved = dict(self.__dict__)

    def mark_saved(self) -> None:
        """Remember the current values as what the database holds."""
        self._saved = {name: getattr(self, name) for name in self.NAMES}

    def changed(self, names: tuple[str, ...]) -> bool:
        """True when any attribute in `names` differs from what the database holds."""
        saved, current = self._saved, self.__dict__
        return any(current[name] != saved[name] for name in names)


class _PortRow(_Row):
    NAMES = _PORT_COLUMNS


class _Telemetry:
    """The stored telemetry of one port (None values when its device was never heard)."""

    __slots__ = _TELEMETRY_COLUMNS

    def __init__(self, values):
        for name, value in zip(_TELEMETRY_COLUMNS, values, strict=True):
            setattr(self, name, value)

    def fresh(self, now: datetime) -> bool:
        """A reading that still describes the port: link up and heard within the offline debounce."""
        return bool(
            self.link_online
            and self.state
            and self.heard_at is not None
            and (now - self.heard_at).total_seconds() < OFFLINE_AFTER_SECONDS
        )

    def session_energy(self, ref: str) -> int | None:
        """Wh the device metered for our session `ref`, or None when the device is not running it."""
        if self.session_ref != ref:
            return None
        end = self.session_stop_wh if self.session_stopped_at is not None else self.energy_wh
        return max(0, (end or 0) - (self.session_start_wh or 0))


class _LiveRow(_Row):
    """A live session, shaped like ChargeSession for the rules and the session services' helpers."""

    NAMES = _SESSION_COLUMNS
    ended_at = None
    terms: TariffRules
    charged_seconds = ChargeSession.charged_seconds

    @property
    def ref(self) -> str:
        return f"S{self.id}"


def tick(now: datetime, *, start_timeout: int = START_TIMEOUT_SECONDS) -> TickReport:
    """Run one supervision round at `now` over the stored telemetry.

    1. Fail the pending sessions whose start the device rejected (or that was never delivered).
    2. Read every port with its telemetry; confirm starts, update measurements, apply the rules.
    3. Settle the sessions that end (their stop commands are queued in the outbox).
    4. Bill the sessions ended "offline" whose device came back with its meter (late_meter).
    5. Raise or clear the staff's port alerts (offline, fault) from what was recorded.
    """
    report = TickReport()
    _fail_refused_starts(now, report)
    if not _take_supervisor_lock():
        db.session.rollback()
        report.skipped = True
        return report

    rows = db.session.execute(
        select(
            *(getattr(Port, name) for name in _PORT_COLUMNS),
            *(getattr(PortTelemetry, name) for name in _TELEMETRY_COLUMNS),
            # The OCPP station's own state (connector 0) when it is Faulted or Unavailable, link up.
            case((occupancy._station_marked(), DeviceLink.state)).label("station_state"),
        )
        .outerjoin(PortTelemetry, PortTelemetry.port_id == Port.id)
        .outerjoin(DeviceLink, occupancy._station_link())
        .where(Port.status != PORT_RETIRED)
        .order_by(Port.id)
    ).all()
    split = len(_PORT_COLUMNS)
    station_at = split + len(_TELEMETRY_COLUMNS)
    live = _live_sessions()
    busy_ports = outbox.open_command_ports()

    ports: list[_PortRow] = []
    endings: list[tuple[int, str, datetime]] = []
    for row in rows:
        port, stored = _PortRow(row[:split]), _Telemetry(row[split:station_at])
        ports.append(port)
        report.ports_read += 1
        session = live.get(port.id)
        reading = stored if stored.fresh(now) else None
        _record_reading(
            port, reading, stored, session, now, command_queued=port.id in busy_ports, station_state=row[station_at]
        )
        if session is None:
            continue
        if stored.session_ref == session.ref and stored.session_stopped_at is not None:
            _update_measurements(session, stored, now)
            if session.state == PENDING:
                endings.append((session.id, svc.START_FAILED, now))
            else:
                reason = DEVICE_STOP_REASONS.get(stored.session_stop_reason or "other", svc.PORT_FAULT)
                at = min(now, max(stored.session_stopped_at, session.confirmed_at or now))
                endings.append((session.id, reason, at))
            continue
        if session.state == PENDING:
            outcome = _pending_rule(session, reading, now, start_timeout)
            if outcome == svc.START_FAILED:
                endings.append((session.id, outcome, now))
                continue
            if outcome != "confirm" or not svc.confirm_started(session.id, now):
                continue
            report.confirmed += 1
            session.state, session.confirmed_at = CHARGING, now
            session.bucket_started_at, session.bucket_start_wh = now, 0
            session.mark_saved()
        _update_measurements(session, reading, now)
        reason = _charging_rule(session, port, reading, now)
        if reason:
            endings.append((session.id, reason, now))
    _write_ports(ports)
    _write_measurements(live.values())
    db.session.commit()

    _settle_endings(endings, report)
    report.late_settled = late_meter.settle_returns(now)
    db.session.commit()
    changed = alerts.refresh(now)
    report.alerts = changed["raised"] + changed["cleared"]
    occupancy.refresh_versions(now)  # the grid's unchanged poll reads one row per site
    db.session.commit()
    return report


def _fail_refused_starts(now: datetime, report: TickReport) -> None:
    """A start the device rejected (or the outbox gave up on) fails its pending session at once."""
    refused = db.session.execute(
        select(ChargeSession.id, PortCommand.error)
        .join(PortCommand, PortCommand.session_id == ChargeSession.id)
        .where(
            ChargeSession.state == PENDING, PortCommand.kind == CMD_START, PortCommand.status.in_((REJECTED, FAILED))
        )
        .order_by(ChargeSession.id)
    ).all()
    _settle_batch(
        [
            svc.Ending(session, svc.FAILED, svc.START_FAILED, now, f"port rejected: {error}")
            for session, error in refused
        ],
        report,
    )
    db.session.commit()


def _take_supervisor_lock() -> bool:
    """On PostgreSQL, a transaction-scoped advisory lock; other databases serialise writers anyway."""
    if db.session.get_bind().dialect.name != "postgresql":
        return True
    return bool(
        db.session.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": SUPERVISOR_LOCK}).scalar_one()
    )


def _live_sessions() -> dict[int, _LiveRow]:
    """Live sessions by port; tariff terms parsed once per distinct rule set (read as text)."""
    columns = [getattr(ChargeSession, name) for name in _SESSION_COLUMNS]
    columns[_SESSION_COLUMNS.index("rules")] = cast(ChargeSession.rules, String).label("rules")
    rows = db.session.execute(select(*columns).where(ChargeSession.state.in_(LIVE_STATES)).order_by(ChargeSession.id))
    terms_cache: dict[str, TariffRules] = {}
    live = {}
    for row in rows:
        session = _LiveRow(row)
        terms = terms_cache.get(session.rules)
        if terms is None:
            terms = terms_cache[session.rules] = TariffRules.from_dict(json.loads(session.rules))
        session.terms = terms
        live[session.port_id] = session
    return live


def _record_reading(
    port: _PortRow,
    reading: _Telemetry | None,
    stored: _Telemetry,
    session: _LiveRow | None,
    now: datetime,
    *,
    command_queued: bool = False,
    station_state: str | None = None,
) -> None:
    """Mirror the stored reading on the port; log offline periods, faults and stuck relays.

    The port's last_seen_at is when its device was last heard. A relay that is on with no live
    session is a stuck relay, unless a command for the port is still open (a session stopped a
    moment ago whose stop has not been acknowledged yet). The state of an OCPP station that reports
    itself Faulted or Unavailable (`station_state`, connector 0) is its ports' state, whatever each
    connector says: such a port is not free, and a start on it is refused with the station's reason.
    """
    if stored.heard_at is not None and (port.last_seen_at is None or stored.heard_at > port.last_seen_at):
        port.last_seen_at = stored.heard_at
    if reading is None:
        if svc.port_offline(port, now) and port.ocpp_state != OFFLINE_STATE:
            db.session.add(PortEvent(port_id=port.id, at=now, kind="offline"))
            _set_state(port, OFFLINE_STATE, now)
        return
    if port.ocpp_state == OFFLINE_STATE:
        db.session.add(PortEvent(port_id=port.id, at=now, kind="online"))
    fault = reading.fault
    if session is None and reading.relay_on and reading.watts > 0:
        fault = fault or ("stuck_relay" if not command_queued else port.fault)
    if fault != port.fault:
        db.session.add(
            PortEvent(
                port_id=port.id, at=now, kind="fault" if fault else "fault_cleared", detail=fault or port.fault or ""
            )
        )
        port.fault = fault
    _set_state(port, station_state or reading.state, now)
    port.watts = reading.watts


def _set_state(port: _PortRow, state: str, now: datetime) -> None:
    if state != port.ocpp_state:
        port.ocpp_state = state
        port.state_changed_at = now


def _pending_rule(session: _LiveRow, reading: _Telemetry | None, now: datetime, timeout: int) -> str | None:
    """'confirm' once the device runs our session with the relay on; START_FAILED when unconfirmed too long."""
    if reading is not None and reading.relay_on and reading.state != FAULTED and reading.session_ref == session.ref:
        return "confirm"
    if (now - session.created_at).total_seconds() >= timeout:
        return svc.START_FAILED
    return None


def _update_measurements(session: _LiveRow, reading: _Telemetry | None, now: datetime) -> None:
    """Energy, power, and the 5-minute averages that decide the tier."""
    if reading is None:
        return
    energy = reading.session_energy(session.ref)
    session.watts = reading.watts if reading.session_stopped_at is None else 0
    if energy is not None:
        session.energy_wh = max(session.energy_wh, energy)
    window = timedelta(minutes=session.terms.average_minutes)
    if session.bucket_started_at is None:
        session.bucket_started_at, session.bucket_start_wh = now, session.energy_wh
    elif now - session.bucket_started_at >= window:
        average = average_watts(
            session.energy_wh - session.bucket_start_wh, (now - session.bucket_started_at).total_seconds()
        )
        session.tier_watts = max(session.tier_watts, average)
        session.bucket_started_at, session.bucket_start_wh = now, session.energy_wh


def _charging_rule(session: _LiveRow, port: _PortRow, reading: _Telemetry | None, now: datetime) -> str | None:
    """The end reason that applies now, if any (checked in order of urgency)."""
    terms = session.terms
    if reading is None:
        return svc.OFFLINE if svc.port_offline(port, now) else None
    elapsed = session.charged_seconds(now)
    if reading.fault or reading.state == FAULTED:
        return fault_reason(reading.fault)
    if reading.watts > terms.overload_w:
        return svc.OVERLOAD
    if (
        terms.pass_max_watts
        and session.energy_wh >= terms.min_billable_wh
        and terms.tier_for(svc.current_tier_watts(session, now)).max_watts > terms.pass_max_watts
    ):
        return svc.OVER_PASS_TIER
    if reading.state == AVAILABLE:
        return svc.UNPLUGGED
    if (
        reading.watts < terms.unplug_w
        and session.energy_wh < terms.min_billable_wh
        and elapsed >= terms.unplug_grace_seconds
    ):
        return svc.UNPLUGGED
    if reading.watts < terms.full_threshold_w and session.energy_wh >= terms.min_billable_wh:
        if session.low_power_since is None:
            session.low_power_since = now
        elif (now - session.low_power_since).total_seconds() >= terms.full_minutes * 60:
            return svc.FULL
    else:
        session.low_power_since = None
    if elapsed >= terms.max_minutes * 60:
        return svc.TIME_UP
    if elapsed >= terms.paid_seconds(svc.current_tier_watts(session, now)):
        return svc.HOLD_EXHAUSTED
    return None


def fault_reason(fault: str | None) -> str:
    """The end reason for a device fault: its overheat or overload protection tripped, or another fault."""
    codes = set((fault or "").split(","))
    if FAULT_OVERHEAT in codes:
        return svc.OVERHEAT
    if FAULT_OVERLOAD in codes:
        return svc.OVERLOAD
    return svc.PORT_FAULT


def _bulk_update(table, columns: tuple[str, ...], rows: list[dict], *, live_only: bool = False) -> None:
    """UPDATE many rows by id in one go: one statement over unnest() arrays on PostgreSQL, executemany
    elsewhere. Each row is {"id": ..., column: value}; with `live_only`, only live sessions change."""
    if not rows:
        return
    if db.session.get_bind().dialect.name == "postgresql":
        dialect = db.session.get_bind().dialect
        arrays = ", ".join(
            ["CAST(:id AS INTEGER[])"]
            + [f"CAST(:{name} AS {table.c[name].type.compile(dialect=dialect)}[])" for name in columns]
        )
        guard = f" AND t.state IN ({', '.join(repr(state) for state in LIVE_STATES)})" if live_only else ""
        db.session.execute(
            text(
                f"UPDATE {table.name} AS t SET {', '.join(f'{n} = v.{n}' for n in columns)} "
                f"FROM unnest({arrays}) AS v(id, {', '.join(columns)}) WHERE t.id = v.id{guard}"
            ),
            {name: [row[name] for row in rows] for name in ("id", *columns)},
        )
        return
    where = [table.c.id == bindparam("b_id")]
    if live_only:
        where.append(or_(*(table.c.state == state for state in LIVE_STATES)))
    db.session.execute(
        update(table).where(*where).values(**{name: bindparam(name) for name in columns}),
        [{"b_id": row["id"], **{name: row[name] for name in columns}} for row in rows],
    )


def _write_ports(ports: list[_PortRow]) -> None:
    """One batched statement for the ports whose mirrored reading changed."""
    _bulk_update(
        Port.__table__,
        _PORT_WRITTEN,
        [{"id": p.id, **{name: getattr(p, name) for name in _PORT_WRITTEN}} for p in ports if p.changed(_PORT_WRITTEN)],
    )


def _write_measurements(sessions) -> None:
    """One batched UPDATE for the live sessions whose measurements moved; ended ones are left alone."""
    _bulk_update(
        ChargeSession.__table__,
        _MEASURED,
        [
            {"id": s.id, **{name: getattr(s, name) for name in _MEASURED}}
            for s in sessions
            if s.state != PENDING and s.changed(_MEASURED)
        ],
        live_only=True,
    )


def _settle_endings(endings: list[tuple[int, str, datetime]], report: TickReport) -> None:
    """End or fail the sessions through the session services, together, and commit (see _settle_batch)."""
    if not endings:
        return
    batch = [
        svc.Ending(session_id, svc.FAILED, reason, at, "start not confirmed in time")
        if reason == svc.START_FAILED
        else svc.Ending(session_id, svc.ENDED, reason, at)
        for session_id, reason, at in sorted(endings)
    ]
    _settle_batch(batch, report)
    db.session.commit()


def _settle_batch(endings: list[svc.Ending], report: TickReport) -> None:
    """Settle the endings together in one savepoint; if that fails, each again alone in a savepoint of its own.

    One failing settlement never takes the others with it: it is rolled back alone and logged, the
    others are kept, and the next tick tries it again (its session is still live). The caller commits.
    """
    if not endings:
        return
    try:
        with db.session.begin_nested():
            settled = svc.settle(endings)
    except Exception:
        log.warning(
            "settling %d sessions together failed; settling each alone",
            len(endings),
            exc_info=True,
            extra={"event": "supervisor.settle_batch_error"},
        )
        db.session.expire_all()  # what the undone savepoint left in memory (balances, states)
        settled = []
        for ending in endings:
            try:
                with db.session.begin_nested():
                    settled += svc.settle([ending])
            except Exception:
                db.session.expire_all()
                log.exception(
                    "settling session %s failed; retried next tick",
                    ending.session_id,
                    extra={"event": "supervisor.settle_error", "session_id": ending.session_id},
                )
                report.settle_errors += 1
    for session in settled:
        if session.state == svc.FAILED:
            report.failed += 1
        else:
            report.ended[session.end_reason] = report.ended.get(session.end_reason, 0) + 1
