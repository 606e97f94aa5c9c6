"""The supervisor: one idempotent tick executes port commands, reads the ports, applies the rules, settles.

Calling tick twice with the same `now` changes nothing the second time. A tick issues a fixed
number of queries whatever the number of ports: it reads ports and live sessions as plain rows,
computes in Python and writes back only what changed, in batches. Live sessions are written with
conditional UPDATEs (`... AND state IN ('pending', 'charging')`), so a session a resident stopped
meanwhile is never overwritten; every transition goes through the session services.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import String, bindparam, cast, func, or_, select, text, update

from chargeshed.charging import occupancy
from chargeshed.charging import sessions as svc
from chargeshed.charging.models import CHARGING, LIVE_STATES, PENDING, ChargeSession
from chargeshed.charging.tariff import Tariff as TariffRules
from chargeshed.charging.tariff import average_watts
from chargeshed.extensions import db
from chargeshed.ports import alerts, outbox
from chargeshed.ports.driver import AVAILABLE, FAULTED, OFFLINE_STATE, PortDriver, PortOffline, PortReading
from chargeshed.ports.models import CMD_START, QUEUED, PortCommand, PortEvent
from chargeshed.sites.models import PORT_RETIRED, Port

START_TIMEOUT_SECONDS = 60
# PostgreSQL advisory lock held for the reading phase, so two workers never supervise at once.
SUPERVISOR_LOCK = 0x43534855

_PORT_COLUMNS = ("id", "code", "status", "ocpp_state", "watts", "fault", "last_seen_at", "state_changed_at")
_SESSION_COLUMNS = ("id", "port_id", "state", "created_at", "confirmed_at", "rules", "watts", "energy_wh",
                    "tier_watts", "bucket_started_at", "bucket_start_wh", "low_power_since")
_MEASURED = ("watts", "energy_wh", "tier_watts", "bucket_started_at", "bucket_start_wh", "low_power_since")
_PORT_WRITTEN = ("ocpp_state", "watts", "fault", "state_changed_at")


@dataclass
class TickReport:
    """What one tick did, for logs and tests."""

    ports_read: int = 0
    confirmed: int = 0
    ended: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    commands: int = 0
    alerts: int = 0  # alerts raised or cleared
    skipped: bool = False  # another supervisor was mid-tick

    @property
    def busy(self) -> bool:
        """True when the tick changed something worth logging."""
        return bool(self.ended or self.failed or self.confirmed or self.commands or self.alerts)


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


class _LiveRow(_Row):
    """A live session, shaped like ChargeSession for the rules and the session services' helpers."""

    NAMES = _SESSION_COLUMNS
    ended_at = None
    terms: TariffRules
    charged_seconds = ChargeSession.charged_seconds


def tick(driver: PortDriver, now: datetime, *, start_timeout: int = START_TIMEOUT_SECONDS) -> TickReport:
    """Run one supervision round at `now`.

    1. Execute queued port commands (a start the port rejects fails its session at once).
    2. Read every port; confirm starts, update measurements, apply the rules; end sessions.
    3. Send the stop commands of the sessions just ended and record the ports' state after it.
    4. Raise or clear the staff's port alerts (offline, fault) from what was recorded.
    """
    report = TickReport()
    run_commands(driver, now, report)
    if not _take_supervisor_lock():
        db.session.rollback()
        report.skipped = True
        return report

    ports = [_PortRow(row) for row in db.session.execute(
        select(*(getattr(Port, name) for name in _PORT_COLUMNS))
        .where(Port.status != PORT_RETIRED).order_by(Port.id))]
    live = _live_sessions()
    queued = set(db.session.execute(
        select(PortCommand.port_id).where(PortCommand.status == QUEUED).distinct()).scalars())

    endings: list[tuple[int, str]] = []
    for port in ports:
        reading = _read(driver, port.code)
        report.ports_read += 1
        session = live.get(port.id)
        _record_reading(port, reading, session, now, command_queued=port.id in queued)
        if session is None:
            continue
        if session.state == PENDING:
            outcome = _pending_rule(session, reading, now, start_timeout)
            if outcome == svc.START_FAILED:
                endings.append((session.id, outcome))
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
            endings.append((session.id, reason))
    _write_ports(ports, now)
    _write_measurements(live.values())
    db.session.commit()

    _settle_endings(endings, now, report)
    if endings:
        touched = run_commands(driver, now, report)
        _record_after_commands(driver, [port for port in ports if port.id in touched], now)
    changed = alerts.refresh(now)
    report.alerts = changed["raised"] + changed["cleared"]
    occupancy.refresh_versions(now)  # the grid's unchanged poll reads one row per site
    return report


def run_commands(driver: PortDriver, now: datetime, report: TickReport | None = None) -> set[int]:
    """Execute queued port commands; a start the port rejects fails its session (hold released).

    Returns the ids of ports that received a command. Safe to call from several processes.
    """
    report = report if report is not None else TickReport()
    touched: set[int] = set()
    for _ in range(3):  # failing a rejected start queues a stop: send it in the same round
        result = outbox.dispatch(driver, now)
        report.commands += result.sent
        touched |= result.port_ids
        failed_any = False
        for command in result.rejected:
            if command.kind != CMD_START or not command.session_id:
                continue
            session = db.session.get(ChargeSession, command.session_id)
            if session is not None and session.state == PENDING and svc.fail_session(
                    session, svc.START_FAILED, now, detail=f"port rejected: {command.error}"):
                report.failed += 1
                failed_any = True
        if not failed_any:
            break
    return touched


def _take_supervisor_lock() -> bool:
    """On PostgreSQL, a transaction-scoped advisory lock; other databases serialise writers anyway."""
    if db.session.get_bind().dialect.name != "postgresql":
        return True
    return bool(db.session.execute(text("SELECT pg_try_advisory_xact_lock(:key)"),
                                   {"key": SUPERVISOR_LOCK}).scalar_one())


def _live_sessions() -> dict[int, _LiveRow]:
    """Live sessions by port; tariff terms parsed once per distinct rule set (read as text)."""
    columns = [getattr(ChargeSession, name) for name in _SESSION_COLUMNS]
    columns[_SESSION_COLUMNS.index("rules")] = cast(ChargeSession.rules, String).label("rules")
    rows = db.session.execute(
        select(*columns).where(ChargeSession.state.in_(LIVE_STATES)).order_by(ChargeSession.id))
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


def _read(driver: PortDriver, code: str) -> PortReading | None:
    try:
        return driver.read(code)
    except PortOffline:
        return None


def _record_reading(port: _PortRow, reading: PortReading | None, session: _LiveRow | None, now: datetime,
                    *, command_queued: bool = False) -> None:
    """Store the live reading on the port; log offline periods, faults and stuck relays.

    A relay that is on with no live session is a stuck relay, unless a command for the port is
    still queued (a session stopped a moment ago whose stop has not gone out yet).
    """
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
        db.session.add(PortEvent(port_id=port.id, at=now, kind="fault" if fault else "fault_cleared",
                                 detail=fault or port.fault or ""))
        port.fault = fault
    _set_state(port, reading.state, now)
    port.watts = reading.watts
    port.last_seen_at = now


def _set_state(port: _PortRow, state: str, now: datetime) -> None:
    if state != port.ocpp_state:
        port.ocpp_state = state
        port.state_changed_at = now


def _pending_rule(session: _LiveRow, reading: PortReading | None, now: datetime, timeout: int) -> str | None:
    """'confirm' once the relay is on; START_FAILED when unconfirmed for too long."""
    if reading is not None and reading.relay_on and reading.state != FAULTED:
        return "confirm"
    if (now - session.created_at).total_seconds() >= timeout:
        return svc.START_FAILED
    return None


def _update_measurements(session: _LiveRow, reading: PortReading | None, now: datetime) -> None:
    """Energy, power, and the 5-minute averages that decide the tier."""
    if reading is None:
        return
    session.watts = reading.watts
    session.energy_wh = max(session.energy_wh, reading.energy_wh)
    window = timedelta(minutes=session.terms.average_minutes)
    if session.bucket_started_at is None:
        session.bucket_started_at, session.bucket_start_wh = now, session.energy_wh
    elif now - session.bucket_started_at >= window:
        average = average_watts(session.energy_wh - session.bucket_start_wh,
                                (now - session.bucket_started_at).total_seconds())
        session.tier_watts = max(session.tier_watts, average)
        session.bucket_started_at, session.bucket_start_wh = now, session.energy_wh


def _charging_rule(session: _LiveRow, port: _PortRow, reading: PortReading | None,
                   now: datetime) -> str | None:
    """The end reason that applies now, if any (checked in order of urgency)."""
    terms = session.terms
    if reading is None:
        return svc.OFFLINE if svc.port_offline(port, now) else None
    elapsed = session.charged_seconds(now)
    if reading.fault or reading.state == FAULTED:
        return svc.PORT_FAULT
    if reading.watts > terms.overload_w:
        return svc.OVERLOAD
    if reading.state == AVAILABLE:
        return svc.UNPLUGGED
    if reading.watts < terms.unplug_w and session.energy_wh < terms.min_billable_wh \
            and elapsed >= terms.unplug_grace_seconds:
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


def _bulk_update(table, columns: tuple[str, ...], rows: list[dict], *, live_only: bool = False) -> None:
    """UPDATE many rows by id in one go: one statement over unnest() arrays on PostgreSQL, executemany
    elsewhere. Each row is {"id": ..., column: value}; with `live_only`, only live sessions change."""
    if not rows:
        return
    if db.session.get_bind().dialect.name == "postgresql":
        dialect = db.session.get_bind().dialect
        arrays = ", ".join(["CAST(:id AS INTEGER[])"] + [
            f"CAST(:{name} AS {table.c[name].type.compile(dialect=dialect)}[])" for name in columns])
        guard = f" AND t.state IN ({', '.join(repr(state) for state in LIVE_STATES)})" if live_only else ""
        db.session.execute(
            text(f"UPDATE {table.name} AS t SET {', '.join(f'{n} = v.{n}' for n in columns)} "
                 f"FROM unnest({arrays}) AS v(id, {', '.join(columns)}) WHERE t.id = v.id{guard}"),
            {name: [row[name] for row in rows] for name in ("id", *columns)},
        )
        return
    where = [table.c.id == bindparam("b_id")]
    if live_only:
        where.append(or_(*(table.c.state == state for state in LIVE_STATES)))
    db.session.execute(update(table).where(*where).values(**{name: bindparam(name) for name in columns}),
                       [{"b_id": row["id"], **{name: row[name] for name in columns}} for row in rows])


def _write_ports(ports: list[_PortRow], now: datetime) -> None:
    """Changed readings, then 'seen at now' for every port that answered: two batched statements."""
    _bulk_update(Port.__table__, _PORT_WRITTEN,
                 [{"id": p.id, **{name: getattr(p, name) for name in _PORT_WRITTEN}}
                  for p in ports if p.changed(_PORT_WRITTEN)])
    _bulk_update(Port.__table__, ("last_seen_at",),
                 [{"id": p.id, "last_seen_at": now} for p in ports
                  if p.last_seen_at == now and p.changed(("last_seen_at",))])


def _write_measurements(sessions) -> None:
    """One batched UPDATE for the live sessions whose measurements moved; ended ones are left alone."""
    _bulk_update(ChargeSession.__table__, _MEASURED,
                 [{"id": s.id, **{name: getattr(s, name) for name in _MEASURED}}
                  for s in sessions if s.state != PENDING and s.changed(_MEASURED)], live_only=True)


def _settle_endings(endings: list[tuple[int, str]], now: datetime, report: TickReport) -> None:
    """End or fail each session through the session services (one transaction each)."""
    if not endings:
        return
    reasons = dict(endings)
    sessions = db.session.execute(
        select(ChargeSession).where(ChargeSession.id.in_(reasons)).order_by(ChargeSession.id)).scalars().all()
    for session in sessions:
        reason = reasons[session.id]
        if reason == svc.START_FAILED:
            if svc.fail_session(session, reason, now, detail="start not confirmed in time"):
                report.failed += 1
        elif svc.end_session(session, reason, now):
            report.ended[reason] = report.ended.get(reason, 0) + 1


def _record_after_commands(driver: PortDriver, ports: list[_PortRow], now: datetime) -> None:
    """Read the ports that just received a command (e.g. a stop) and store what they report now."""
    if not ports:
        return
    ids = [port.id for port in ports]
    live_ports = set(db.session.execute(
        select(ChargeSession.port_id).where(ChargeSession.port_id.in_(ids),
                                            ChargeSession.state.in_(LIVE_STATES))).scalars())
    queued = set(db.session.execute(
        select(func.distinct(PortCommand.port_id)).where(PortCommand.port_id.in_(ids),
                                                         PortCommand.status == QUEUED)).scalars())
    for port in ports:
        port.mark_saved()
    for port in ports:
        if port.id in live_ports:
            continue
        _record_reading(port, _read(driver, port.code), None, now, command_queued=port.id in queued)
    _write_ports(ports, now)
    db.session.commit()
