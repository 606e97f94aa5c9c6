"""Debounced port alerts: raise offline and fault alerts, clear them, let staff acknowledge them.

`refresh(now)` is idempotent and cheap when nothing is wrong; the supervisor calls it every tick.
A blip shorter than the debounce never becomes an alert: the start of a condition is read from
the port itself (last heartbeat) or from the port's event log (first fault reading).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Select, and_, func, or_, select

from chargeshed.extensions import db
from chargeshed.ports.driver import FAULTED, OFFLINE_STATE
from chargeshed.ports.models import ALERT_FAULT, ALERT_OFFLINE, Alert, PortEvent
from chargeshed.ports.telemetry import OFFLINE_AFTER_SECONDS, port_offline
from chargeshed.sites.models import PORT_MAINTENANCE, PORT_RETIRED, Port

# How long a condition must last before it is an alert.
DEBOUNCE = {
    ALERT_OFFLINE: timedelta(seconds=OFFLINE_AFTER_SECONDS),
    ALERT_FAULT: timedelta(minutes=2),
}


def _fault_since(port: Port, now: datetime) -> datetime:
    """When the current fault was first read: the port's latest 'fault' event."""
    seen = db.session.execute(
        select(PortEvent.at)
        .where(PortEvent.port_id == port.id, PortEvent.kind == "fault", PortEvent.at <= now)
        .order_by(PortEvent.at.desc(), PortEvent.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return seen or port.state_changed_at or now


def _active_conditions(port: Port, now: datetime) -> dict[str, tuple[datetime, str] | None]:
    """Per alert kind: (since, detail) while its condition holds, None when it does not.

    A kind is left out when its state cannot be known (a fault while the port is offline).
    """
    if port.status == PORT_RETIRED:
        return {ALERT_OFFLINE: None, ALERT_FAULT: None}
    if port_offline(port, now):
        since = port.last_seen_at or port.state_changed_at or now
        # While offline we cannot tell whether a fault went away: leave a fault alert as it is.
        return {ALERT_OFFLINE: (since, "")}
    faulted = bool(port.fault) or port.ocpp_state == FAULTED
    return {
        ALERT_OFFLINE: None,
        ALERT_FAULT: (_fault_since(port, now), (port.fault or FAULTED)[:80]) if faulted else None,
    }


def refresh(now: datetime) -> dict[str, int]:
    """Raise alerts whose condition outlasted its debounce, clear those whose condition ended.

    Ports in maintenance raise no new alerts (staff took them out on purpose). Commits.
    Returns counts of raised and cleared alerts.
    """
    stale = now - DEBOUNCE[ALERT_OFFLINE]
    troubled = or_(
        Port.fault.is_not(None),
        Port.ocpp_state.in_((FAULTED, OFFLINE_STATE)),
        and_(Port.last_seen_at.is_not(None), Port.last_seen_at <= stale),
    )
    with_open = select(Alert.port_id).where(Alert.cleared_at.is_(None))
    ports = (
        db.session.execute(
            select(Port)
            .where(or_(and_(Port.status != PORT_RETIRED, troubled), Port.id.in_(with_open)))
            .order_by(Port.id)
        )
        .scalars()
        .all()
    )
    open_alerts: dict[tuple[int, str], Alert] = {
        (alert.port_id, alert.kind): alert
        for alert in db.session.execute(select(Alert).where(Alert.cleared_at.is_(None))).scalars()
    }
    raised = cleared = 0
    for port in ports:
        for kind, condition in _active_conditions(port, now).items():
            alert = open_alerts.get((port.id, kind))
            if condition is None:
                if alert is not None:
                    alert.cleared_at = now
                    cleared += 1
                continue
            since, detail = condition
            if alert is not None or port.status == PORT_MAINTENANCE:
                continue
            if now - since >= DEBOUNCE[kind]:
                db.session.add(
                    Alert(port_id=port.id, kind=kind, detail=detail, started_at=since, raised_at=since + DEBOUNCE[kind])
                )
                raised += 1
    db.session.commit()
    return {"raised": raised, "cleared": cleared}


def acknowledge(alert: Alert, user_id: int, now: datetime) -> bool:
    """Record who has seen the alert; False when it was acknowledged already. Commits."""
    if alert.acknowledged_at is not None:
        return False
    alert.acknowledged_at = now
    alert.acknowledged_by_id = user_id
    db.session.commit()
    return True


def alerts_query(port_ids: Select, *, open_only: bool = False) -> Select:
    """Alerts on the given ports: open and unacknowledged first, then newest."""
    query = select(Alert).where(Alert.port_id.in_(port_ids))
    if open_only:
        query = query.where(Alert.cleared_at.is_(None))
    return query.order_by(
        Alert.cleared_at.is_not(None), Alert.acknowledged_at.is_not(None), Alert.raised_at.desc(), Alert.id.desc()
    )


def unacknowledged_open_count(port_ids: Select) -> int:
    """Open alerts nobody has acknowledged yet, on the given ports."""
    return db.session.execute(
        select(func.count(Alert.id)).where(
            Alert.port_id.in_(port_ids), Alert.cleared_at.is_(None), Alert.acknowledged_at.is_(None)
        )
    ).scalar_one()
