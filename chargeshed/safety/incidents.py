"""Safety incidents from the ports: overload and overheat cut-offs, stuck relays and port faults.

`sync_incidents(now)` reads what happened since its last run (sessions ended for overload, fault
events from the supervisor) and opens an incident on the shed, or adds to the incident of that
kind still open there. Each source row is recorded once (unique `source_ref`), so running it
twice, or from two processes, changes nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from chargeshed.charging.models import ChargeSession
from chargeshed.extensions import db
from chargeshed.ports.driver import FAULT_OVERHEAT, FAULT_OVERLOAD
from chargeshed.ports.models import PortEvent
from chargeshed.safety.models import (
    INCIDENT_CLOSED,
    INCIDENT_OPEN,
    INCIDENT_OVERHEAT,
    INCIDENT_OVERLOAD,
    INCIDENT_PORT_FAULT,
    INCIDENT_STUCK_RELAY,
    Incident,
    IncidentOccurrence,
    SyncMark,
)
from chargeshed.sites.models import Port
from chargeshed.timeutil import now as clock_now

MARK = "incidents"
# Rows written just before the previous run's `now` by a slower transaction are read again;
# their unique source_ref keeps them from counting twice.
OVERLAP = timedelta(minutes=5)
STUCK_RELAY_DETAIL = "stuck_relay"
OVERLOAD_REASON = "overload"
# A device's overload fault this close to a session ended for overload on the same port is that cut-off.
SAME_CUT_OFF = timedelta(minutes=10)


@dataclass
class SyncReport:
    """What one sync did."""

    opened: list[int] = field(default_factory=list)
    added: int = 0


@dataclass(frozen=True)
class _Source:
    ref: str
    kind: str
    shed_id: int
    port_id: int | None
    session_id: int | None
    at: datetime
    detail: str


def sync_incidents(now: datetime) -> SyncReport:
    """Open or extend incidents for port problems since the last sync (up to `now`).
    Flushes; the caller commits."""
    mark = db.session.get(SyncMark, MARK)
    since = mark.at - OVERLAP if mark is not None else None
    report = SyncReport()
    for source in _sources(since, now):
        if (
            db.session.execute(select(IncidentOccurrence.id).where(IncidentOccurrence.source_ref == source.ref)).first()
            is not None
        ):
            continue
        try:
            with db.session.begin_nested():
                incident, opened = _open_incident(source)
                db.session.add(
                    IncidentOccurrence(
                        incident_id=incident.id,
                        source_ref=source.ref,
                        port_id=source.port_id,
                        session_id=source.session_id,
                        at=source.at,
                        detail=source.detail[:255],
                    )
                )
                incident.occurrences += 1
                incident.last_seen_at = max(incident.last_seen_at, source.at)
                db.session.flush()
        except IntegrityError:  # another process recorded it first
            continue
        report.added += 1
        if opened:
            report.opened.append(incident.id)
    if mark is None:
        db.session.add(SyncMark(name=MARK, at=now))
    else:
        mark.at = max(mark.at, now)
    db.session.flush()
    return report


def _sources(since: datetime | None, now: datetime) -> list[_Source]:
    """Overload-ended sessions and port fault events in (since, now], oldest first."""
    sessions = select(
        ChargeSession.id, ChargeSession.shed_id, ChargeSession.port_id, ChargeSession.ended_at, ChargeSession.watts
    ).where(ChargeSession.end_reason == OVERLOAD_REASON, ChargeSession.ended_at <= now)
    events = (
        select(PortEvent.id, Port.shed_id, PortEvent.port_id, PortEvent.at, PortEvent.detail)
        .join(Port, Port.id == PortEvent.port_id)
        .where(PortEvent.kind == "fault", PortEvent.at <= now)
    )
    if since is not None:
        sessions = sessions.where(ChargeSession.ended_at > since)
        events = events.where(PortEvent.at > since)
    found = [
        _Source(f"session:{sid}", INCIDENT_OVERLOAD, shed_id, port_id, sid, at, f"{watts} W")
        for sid, shed_id, port_id, at, watts in db.session.execute(sessions)
    ]
    cut_offs = [(s.port_id, s.at) for s in found]
    for eid, shed_id, port_id, at, detail in db.session.execute(events):
        kind = _fault_kind(detail or "")
        if kind == INCIDENT_OVERLOAD and any(p == port_id and abs(t - at) <= SAME_CUT_OFF for p, t in cut_offs):
            continue  # the device's own record of an overload the session's end already counts
        found.append(_Source(f"port_event:{eid}", kind, shed_id, port_id, None, at, detail or ""))
    return sorted(found, key=lambda s: (s.at, s.ref))


def _fault_kind(detail: str) -> str:
    """The incident kind of a port fault code (codes may be comma-separated)."""
    codes = set(detail.split(","))
    if STUCK_RELAY_DETAIL in codes:
        return INCIDENT_STUCK_RELAY
    if FAULT_OVERHEAT in codes:
        return INCIDENT_OVERHEAT
    if FAULT_OVERLOAD in codes:
        return INCIDENT_OVERLOAD
    return INCIDENT_PORT_FAULT


def _open_incident(source: _Source) -> tuple[Incident, bool]:
    """The open incident of this kind on the shed, or a new one (True when new)."""
    incident = db.session.execute(
        select(Incident).where(
            Incident.shed_id == source.shed_id, Incident.kind == source.kind, Incident.state == INCIDENT_OPEN
        )
    ).scalar_one_or_none()
    if incident is not None:
        return incident, False
    incident = Incident(
        shed_id=source.shed_id,
        kind=source.kind,
        state=INCIDENT_OPEN,
        occurrences=0,
        opened_at=source.at,
        last_seen_at=source.at,
    )
    db.session.add(incident)
    db.session.flush()
    return incident, True


class IncidentError(Exception):
    """An incident step that may not happen; `message` is for the staff member."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def close_incident(incident: Incident, actor_id: int, resolution: str, now: datetime | None = None) -> None:
    """Close an incident with what was checked or repaired; a later event opens a new one.
    Flushes; the caller commits."""
    resolution = (resolution or "").strip()
    if incident.state != INCIDENT_OPEN:
        raise IncidentError(_("This incident is closed already."))
    if not resolution:
        raise IncidentError(_("Say what was checked or repaired."))
    incident.state = INCIDENT_CLOSED
    incident.closed_at = now or clock_now()
    incident.closed_by_id = actor_id
    incident.resolution = resolution
    db.session.flush()
