"""Live occupancy: every port's state per shed, counts on top, and a cheap version for polling.

Callers pass the sheds to show as a subquery of ids, already limited to what the user may see
(chargeshed.accounts.access.visible_shed_ids).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Select, and_, case, func, or_, select

from chargeshed.charging.models import CHARGING, LIVE_STATES, ChargeSession
from chargeshed.charging.port_state import display_state
from chargeshed.charging.sessions import OFFLINE_AFTER_SECONDS, port_offline
from chargeshed.extensions import db
from chargeshed.ports.driver import OFFLINE_STATE
from chargeshed.ports.models import Alert
from chargeshed.sites.models import PORT_MAINTENANCE, PORT_RETIRED, Port, Shed

OUT_OF_SERVICE = ("fault", "offline", "maintenance")
COUNTED = ("free", "charging", "occupied", "out_of_service")


@dataclass(frozen=True)
class PortCell:
    """One port as the grid shows it."""

    port_id: int
    number: int
    label: str
    state: str
    watts: int
    fault: str | None
    session_state: str | None
    since: datetime | None  # charging since (session start), or last heard from (offline)


@dataclass
class ShedBlock:
    """A shed with its ports and the counts shown above them."""

    shed_id: int
    name: str
    location: str
    cells: list[PortCell] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTED, 0))

    def add(self, cell: PortCell) -> None:
        """Add a port and count it."""
        self.cells.append(cell)
        self.counts["out_of_service" if cell.state in OUT_OF_SERVICE else cell.state] += 1


def occupancy(shed_ids: Select, now: datetime) -> list[ShedBlock]:
    """The sheds (by name) and their ports in service or maintenance, with live states.

    Two queries whatever the number of ports; retired ports are left out.
    """
    blocks = {
        shed_id: ShedBlock(shed_id, name, location)
        for shed_id, name, location in db.session.execute(
            select(Shed.id, Shed.name, Shed.location).where(Shed.id.in_(shed_ids))
            .order_by(Shed.name, Shed.id)
        )
    }
    rows = db.session.execute(
        select(Port.id, Port.shed_id, Port.number, Port.label, Port.status, Port.ocpp_state, Port.watts,
               Port.fault, Port.last_seen_at, ChargeSession.state.label("session_state"),
               ChargeSession.confirmed_at, ChargeSession.created_at)
        .outerjoin(ChargeSession,
                   and_(ChargeSession.port_id == Port.id, ChargeSession.state.in_(LIVE_STATES)))
        .where(Port.shed_id.in_(shed_ids), Port.status != PORT_RETIRED)
        .order_by(Port.shed_id, Port.number)
    ).all()
    for row in rows:
        offline = port_offline(row, now)
        state = display_state(row, row.session_state is not None, offline)
        since = (row.confirmed_at or row.created_at) if state == "charging" else \
            row.last_seen_at if state == "offline" else None
        blocks[row.shed_id].add(PortCell(
            port_id=row.id, number=row.number, label=row.label, state=state,
            watts=row.watts if state == "charging" else 0, fault=row.fault,
            session_state=row.session_state, since=since,
        ))
    return list(blocks.values())


def totals(blocks: list[ShedBlock]) -> dict[str, int]:
    """Counts over all sheds."""
    return {key: sum(block.counts[key] for block in blocks) for key in COUNTED}


def state_version(shed_ids: Select, now: datetime, *extra: object) -> str:
    """A short fingerprint of everything the grid shows, from three aggregate queries.

    It changes when a port's reading, service status or fault changes, when a port goes
    offline (the debounce passes), when a charge starts or ends, when a shed is renamed or
    an alert is raised or acknowledged, and each minute while something charges (the grid
    shows charging time). `extra` adds the caller's own inputs (locale, user).
    """
    stale = now - timedelta(seconds=OFFLINE_AFTER_SECONDS)
    in_scope = Port.shed_id.in_(shed_ids)
    ports = db.session.execute(
        select(
            func.count(Port.id),
            func.max(Port.state_changed_at),
            func.coalesce(func.sum(Port.watts), 0),
            func.coalesce(func.sum(case((Port.fault.is_not(None), Port.id), else_=0)), 0),
            func.coalesce(func.sum(case((Port.status == PORT_MAINTENANCE, Port.id), else_=0)), 0),
            func.coalesce(func.sum(case((Port.status == PORT_RETIRED, Port.id), else_=0)), 0),
            func.coalesce(func.sum(case((or_(Port.ocpp_state == OFFLINE_STATE, Port.last_seen_at <= stale),
                                         Port.id), else_=0)), 0),
        ).where(in_scope)
    ).one()
    sessions = db.session.execute(
        select(
            func.count(ChargeSession.id),
            func.coalesce(func.sum(ChargeSession.id), 0),
            func.coalesce(func.sum(case((ChargeSession.state == CHARGING, ChargeSession.id), else_=0)), 0),
        ).where(ChargeSession.shed_id.in_(shed_ids), ChargeSession.state.in_(LIVE_STATES))
    ).one()
    sheds = db.session.execute(select(Shed.id, Shed.name, Shed.location).where(Shed.id.in_(shed_ids))
                               .order_by(Shed.id)).all()
    alerts = db.session.execute(
        select(func.count(Alert.id), func.coalesce(func.sum(Alert.id), 0))
        .where(Alert.port_id.in_(select(Port.id).where(in_scope)), Alert.cleared_at.is_(None),
               Alert.acknowledged_at.is_(None))
    ).one()
    minute = now.strftime("%Y%m%d%H%M") if sessions[0] else ""
    material = repr((tuple(ports), tuple(sessions), [tuple(s) for s in sheds], tuple(alerts), minute, extra))
    return hashlib.sha1(material.encode()).hexdigest()[:24]
