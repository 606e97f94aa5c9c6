"""What staff do to a port in service: rename, maintenance, retire, stop the charge on it.

Every function works inside the caller's transaction (the request commits): it either does everything
or raises Refused with nothing of its own kept.
Each action is logged as a PortEvent row naming the person and, given the actor's id, in the staff action log.
"""

from __future__ import annotations

from datetime import datetime

from chargeshed.accounts import audit
from chargeshed.charging import sessions as charging
from chargeshed.charging.models import PENDING
from chargeshed.extensions import db
from chargeshed.ports import outbox
from chargeshed.ports.models import CMD_SET_AVAILABLE, PortEvent
from chargeshed.sites.admin import Refused
from chargeshed.sites.models import PORT_ACTIVE, PORT_MAINTENANCE, PORT_RETIRED, Port

__all__ = ["Refused", "rename_port", "retire_port", "set_maintenance", "staff_stop"]


def _log(port: Port, kind: str, who: str, now: datetime, detail: str = "") -> None:
    text = f"{who}: {detail}" if detail else who
    db.session.add(PortEvent(port_id=port.id, at=now, kind=kind, detail=text[:255]))


def _audit(actor_id: int | None, action: str, port: Port, reason: str = "", what: str = "") -> None:
    if actor_id is None:
        return
    shed = port.shed
    target = f"{what}{shed.name} #{port.number} ({port.code})"
    audit.record(actor_id, action, target, site_id=shed.site_id, operator_id=shed.operator_id, reason=reason)


def rename_port(port: Port, label: str, who: str, now: datetime, *, actor_id: int | None = None) -> None:
    """Change the label residents see under the port number (the caller commits)."""
    label = label.strip()
    if port.status == PORT_RETIRED:
        raise Refused("retired")
    old = port.label
    port.label = label
    _log(port, "renamed", who, now, f"{old} → {label}")
    _audit(actor_id, audit.PORT_RENAMED, port, f"{old} → {label}")


def set_maintenance(port: Port, on: bool, who: str, now: datetime, *, actor_id: int | None = None) -> bool:
    """Take a port out of service (or back); False when it already was (the caller commits).

    Refused while a charge runs on it: stop the charge first. The hardware is told too.
    The port row is locked (as start_session locks it), so a start racing this either
    finishes first and is seen here, or sees the port in maintenance.
    """
    port = charging.lock_port(port)
    if port.status == PORT_RETIRED:
        raise Refused("retired")
    wanted = PORT_MAINTENANCE if on else PORT_ACTIVE
    if port.status == wanted:
        return False
    _take_out_of_use(port, wanted, check_busy=on)
    outbox.enqueue(port.id, CMD_SET_AVAILABLE, argument="off" if on else "on")
    _log(port, "maintenance_on" if on else "maintenance_off", who, now)
    _audit(actor_id, audit.MAINTENANCE_ON if on else audit.MAINTENANCE_OFF, port)
    return True


def retire_port(port: Port, who: str, now: datetime, *, actor_id: int | None = None) -> bool:
    """Take a port out of use for good; its sessions and events stay. False if retired already (the caller commits)."""
    port = charging.lock_port(port)
    if port.status == PORT_RETIRED:
        return False
    _take_out_of_use(port, PORT_RETIRED, check_busy=True)
    outbox.enqueue(port.id, CMD_SET_AVAILABLE, argument="off")
    _log(port, "retired", who, now)
    _audit(actor_id, audit.PORT_RETIRED, port)
    return True


def _take_out_of_use(port: Port, status: str, *, check_busy: bool) -> None:
    """Set the port's status; Refused("busy") if a charge is live on it. The status is written and
    the live session checked again under the write lock (SQLite has no row locks), in a savepoint."""
    if check_busy and charging.live_session_on_port(port.id) is not None:
        raise Refused("busy")
    with db.session.begin_nested():
        port.status = status
        db.session.flush()
        if check_busy and charging.live_session_on_port(port.id) is not None:
            raise Refused("busy")


def staff_stop(port: Port, who: str, reason: str, now: datetime, *, actor_id: int | None = None) -> bool:
    """End the charge on a port as staff, with the reason on record, and settle it (the caller commits).

    False if none runs."""
    session = charging.live_session_on_port(port.id)
    if session is None:
        return False
    detail = f"{who}: {reason.strip()}"
    _log(port, "staff_stop", who, now, reason.strip())
    _audit(actor_id, audit.STAFF_STOP, port, reason, what=f"#{session.id} · ")
    if session.state == PENDING:
        return charging.fail_session(session, charging.STAFF_STOP, now, detail=detail)
    return charging.end_session(session, charging.STAFF_STOP, now, detail=detail)
