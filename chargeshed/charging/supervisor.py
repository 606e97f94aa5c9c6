"""The supervisor: one idempotent tick reads the ports, applies the rules, settles.

Calling tick twice with the same `now` changes nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, select

from chargeshed.charging import sessions as svc
from chargeshed.charging.models import LIVE_STATES, PENDING, ChargeSession
from chargeshed.extensions import db
from chargeshed.ports import outbox
from chargeshed.ports.driver import AVAILABLE, FAULTED, OFFLINE_STATE, PortDriver, PortOffline, PortReading
from chargeshed.ports.models import CMD_START, PortEvent
from chargeshed.sites.models import PORT_RETIRED, Port

START_TIMEOUT_SECONDS = 60


@dataclass
class TickReport:
    """What one tick did, for logs and tests."""

    ports_read: int = 0
    confirmed: int = 0
    ended: dict[str, int] = field(default_factory=dict)
    failed: int = 0


def tick(driver: PortDriver, now: datetime) -> TickReport:
    """Run one supervision round at `now`."""
    report = TickReport()
    for command in outbox.dispatch(driver, now):
        if command.kind == CMD_START and command.session_id:
            session = db.session.get(ChargeSession, command.session_id)
            if session is not None and session.state == PENDING and svc.fail_session(
                session, svc.START_FAILED, now, detail=f"port rejected: {command.error}"
            ):
                report.failed += 1

    rows = db.session.execute(
        select(Port, ChargeSession)
        .outerjoin(ChargeSession, and_(ChargeSession.port_id == Port.id, ChargeSession.state.in_(LIVE_STATES)))
        .where(Port.status != PORT_RETIRED)
        .order_by(Port.id)
    ).all()
    endings: list[tuple[ChargeSession, str, str]] = []
    for port, session in rows:
        try:
            reading = driver.read(port.code)
        except PortOffline:
            reading = None
        report.ports_read += 1
        _record_reading(port, reading, session, now)
        if session is None:
            continue
        if session.state == PENDING:
            outcome = _pending_rule(session, reading, now)
            if outcome == "confirm":
                svc.mark_charging(session, now)
                report.confirmed += 1
            elif outcome:
                endings.append((session, outcome, ""))
            continue
        _update_measurements(session, reading, now)
        reason = _charging_rule(session, port, reading, now)
        if reason:
            endings.append((session, reason, ""))
    db.session.commit()

    for session, reason, detail in endings:
        if reason == svc.START_FAILED:
            if svc.fail_session(session, reason, now, detail="start not confirmed in time"):
                report.failed += 1
        elif svc.end_session(session, reason, now, detail=detail):
            report.ended[reason] = report.ended.get(reason, 0) + 1
    return report


def _record_reading(port: Port, reading: PortReading | None, session: ChargeSession | None,
                    now: datetime) -> None:
    """Store the live reading on the port; log offline periods, faults and stuck relays."""
    if reading is None:
        if svc.port_offline(port, now) and port.ocpp_state != OFFLINE_STATE:
            db.session.add(PortEvent(port_id=port.id, at=now, kind="offline"))
            _set_state(port, OFFLINE_STATE, now)
        return
    if port.ocpp_state == OFFLINE_STATE:
        db.session.add(PortEvent(port_id=port.id, at=now, kind="online"))
    fault = reading.fault
    if session is None and reading.relay_on and reading.watts > 0:
        fault = fault or "stuck_relay"
    if fault != port.fault:
        db.session.add(PortEvent(port_id=port.id, at=now, kind="fault" if fault else "fault_cleared",
                                 detail=fault or port.fault or ""))
        port.fault = fault
    _set_state(port, reading.state, now)
    port.watts = reading.watts
    port.last_seen_at = now


def _set_state(port: Port, state: str, now: datetime) -> None:
    if state != port.ocpp_state:
        port.ocpp_state = state
        port.state_changed_at = now


def _pending_rule(session: ChargeSession, reading: PortReading | None, now: datetime) -> str | None:
    """'confirm' once the relay is on; START_FAILED when unconfirmed for too long."""
    if reading is not None and reading.relay_on and reading.state != FAULTED:
        return "confirm"
    if (now - session.created_at).total_seconds() >= START_TIMEOUT_SECONDS:
        return svc.START_FAILED
    return None


def _update_measurements(session: ChargeSession, reading: PortReading | None, now: datetime) -> None:
    """Energy, power, and the 5-minute averages that decide the tier."""
    if reading is None:
        return
    session.watts = reading.watts
    session.energy_wh = max(session.energy_wh, reading.energy_wh)
    window = timedelta(minutes=session.terms.average_minutes)
    if session.bucket_started_at is None:
        session.bucket_started_at, session.bucket_start_wh = now, session.energy_wh
    elif now - session.bucket_started_at >= window:
        minutes = (now - session.bucket_started_at).total_seconds() / 60
        average = int((session.energy_wh - session.bucket_start_wh) * 60 / minutes)
        session.tier_watts = max(session.tier_watts, average)
        session.bucket_started_at, session.bucket_start_wh = now, session.energy_wh


def _charging_rule(session: ChargeSession, port: Port, reading: PortReading | None, now: datetime) -> str | None:
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
