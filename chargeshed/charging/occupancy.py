"""Live occupancy: every port's state per shed, counts on top, and a cheap version for polling.

Callers pass the sheds to show as a subquery of ids, already limited to what the user may see
(chargeshed.accounts.access.visible_shed_ids), and show them a page at a time (shed_page): a
manager watching one compound never pays for every port of an operator. The unchanged poll reads
one row per site (OccupancyVersion) that the supervisor tick keeps up to date (refresh_versions).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Select, and_, case, func, insert, or_, select, update

from chargeshed.charging.models import CHARGING, LIVE_STATES, ChargeSession
from chargeshed.charging.port_state import display_state
from chargeshed.charging.sessions import OFFLINE_AFTER_SECONDS, port_offline
from chargeshed.extensions import db
from chargeshed.ports.driver import OFFLINE_STATE
from chargeshed.ports.models import Alert, DeviceLink, PortTelemetry
from chargeshed.ports.targets import OCPP, SIM
from chargeshed.sites.models import PORT_MAINTENANCE, PORT_RETIRED, OccupancyVersion, Port, Shed, Site

OUT_OF_SERVICE = ("fault", "offline", "maintenance")
# The station-wide states (OCPP StatusNotification on connector 0) the grid marks on its ports' cells;
# Available is the normal one. A station whose link is down carries the link marker instead.
STATION_FAULTED = "Faulted"
STATION_UNAVAILABLE = "Unavailable"
STATION_MARKED = (STATION_FAULTED, STATION_UNAVAILABLE)
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
    # A hardware-bound port whose device link is down (before the offline debounce shows it), and
    # when the device was last heard.
    link_down: bool = False
    heard_at: datetime | None = None
    # The OCPP station the port belongs to is Faulted or Unavailable (its link being up).
    station_state: str | None = None


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


def occupancy(shed_ids: Select | list[int], now: datetime) -> list[ShedBlock]:
    """The sheds (by name) and their ports in service or maintenance, with live states.

    Two queries whatever the number of ports; retired ports are left out.
    """
    blocks = {
        shed_id: ShedBlock(shed_id, name, location)
        for shed_id, name, location in db.session.execute(
            select(Shed.id, Shed.name, Shed.location).where(Shed.id.in_(shed_ids)).order_by(Shed.name, Shed.id)
        )
    }
    rows = db.session.execute(
        select(
            Port.id,
            Port.shed_id,
            Port.number,
            Port.label,
            Port.status,
            Port.ocpp_state,
            Port.watts,
            Port.fault,
            Port.last_seen_at,
            ChargeSession.state.label("session_state"),
            ChargeSession.confirmed_at,
            ChargeSession.created_at,
            _link_down().label("link_down"),
            PortTelemetry.heard_at,
            case((_station_marked(), DeviceLink.state)).label("station_state"),
        )
        .outerjoin(ChargeSession, and_(ChargeSession.port_id == Port.id, ChargeSession.state.in_(LIVE_STATES)))
        .outerjoin(PortTelemetry, PortTelemetry.port_id == Port.id)
        .outerjoin(DeviceLink, _station_link())
        .where(Port.shed_id.in_(shed_ids), Port.status != PORT_RETIRED)
        .order_by(Port.shed_id, Port.number)
    ).all()
    for row in rows:
        offline = port_offline(row, now)
        state = display_state(row, row.session_state is not None, offline)
        since = (
            (row.confirmed_at or row.created_at)
            if state == "charging"
            else row.last_seen_at
            if state == "offline"
            else None
        )
        blocks[row.shed_id].add(
            PortCell(
                port_id=row.id,
                number=row.number,
                label=row.label,
                state=state,
                watts=row.watts if state == "charging" else 0,
                fault=row.fault,
                session_state=row.session_state,
                since=since,
                link_down=bool(row.link_down) and state != "offline",
                heard_at=row.heard_at,
                station_state=row.station_state,
            )
        )
    return list(blocks.values())


def _link_down():
    """SQL: the port is bound to real hardware (not the simulator) whose device link is down."""
    return and_(PortTelemetry.scheme != SIM, PortTelemetry.link_online.is_(False))


def _station_link():
    """SQL join condition: the link row of the OCPP station a port is bound to."""
    return and_(PortTelemetry.scheme == OCPP, DeviceLink.device == PortTelemetry.device)


def _station_marked(state: str | None = None):
    """SQL: the port's OCPP station, its link up, reports a marked station-wide state (or `state`)."""
    states = STATION_MARKED if state is None else (state,)
    return and_(PortTelemetry.link_online.is_(True), DeviceLink.state.in_(states))


def totals(blocks: list[ShedBlock]) -> dict[str, int]:
    """Counts over all sheds."""
    return {key: sum(block.counts[key] for block in blocks) for key in COUNTED}


@dataclass(frozen=True)
class ShedPage:
    """One page of a site's sheds: which sheds, and where it stands among all of them."""

    shed_ids: list[int]
    number: int
    pages: int
    total: int
    first: int  # 1-based position of the page's first shed (0 when there is none)
    last: int


def shed_page(shed_ids: Select, page: int, per_page: int, only_shed: int | None = None) -> ShedPage:
    """The sheds (by name) on page `page` of the visible ones, or the one shed `only_shed` if visible.

    Two small queries on the shed table; the grid then reads the ports of these sheds only.
    """
    visible = select(Shed.id).where(Shed.id.in_(shed_ids))
    if only_shed is not None:
        visible = visible.where(Shed.id == only_shed)
    total = db.session.execute(select(func.count()).select_from(visible.subquery())).scalar_one()
    pages = max(1, -(-total // per_page))
    number = min(max(1, page), pages)
    ids = list(
        db.session.execute(
            visible.order_by(Shed.name, Shed.id).offset((number - 1) * per_page).limit(per_page)
        ).scalars()
    )
    first = (number - 1) * per_page + 1 if ids else 0
    return ShedPage(ids, number, pages, total, first, first + len(ids) - 1 if ids else 0)


def _ids_where(condition, column):
    """Sum of `column` over the rows meeting `condition`: changes when any such row comes or goes."""
    return func.coalesce(func.sum(case((condition, column), else_=0)), 0)


def _site_figures(now: datetime) -> tuple[Select, int]:
    """Per site: aggregates over everything the grid shows, and the stored version row (one statement)."""
    stale = now - timedelta(seconds=OFFLINE_AFTER_SECONDS)
    still_heard = and_(Port.status != PORT_RETIRED, Port.ocpp_state != OFFLINE_STATE, Port.last_seen_at > stale)
    ports = (
        select(
            Shed.site_id,
            func.count(Port.id).label("ports"),
            func.max(Port.state_changed_at).label("changed"),
            func.coalesce(func.sum(Port.watts), 0).label("watts"),
            _ids_where(Port.fault.is_not(None), Port.id).label("faults"),
            _ids_where(Port.status == PORT_MAINTENANCE, Port.id).label("maintenance"),
            _ids_where(Port.status == PORT_RETIRED, Port.id).label("retired"),
            _ids_where(or_(Port.ocpp_state == OFFLINE_STATE, Port.last_seen_at <= stale), Port.id).label("offline"),
            func.min(case((still_heard, Port.last_seen_at))).label("oldest_heard"),
            _ids_where(_link_down(), Port.id).label("links_down"),
            _ids_where(_station_marked(STATION_FAULTED), Port.id).label("stations_faulted"),
            _ids_where(_station_marked(STATION_UNAVAILABLE), Port.id).label("stations_unavailable"),
        )
        .join(Shed, Shed.id == Port.shed_id)
        .outerjoin(PortTelemetry, PortTelemetry.port_id == Port.id)
        .outerjoin(DeviceLink, _station_link())
        .group_by(Shed.site_id)
        .subquery()
    )
    sessions = (
        select(
            Shed.site_id,
            func.count(ChargeSession.id).label("live"),
            func.sum(ChargeSession.id).label("live_ids"),
            _ids_where(ChargeSession.state == CHARGING, ChargeSession.id).label("charging_ids"),
        )
        .join(Shed, Shed.id == ChargeSession.shed_id)
        .where(ChargeSession.state.in_(LIVE_STATES))
        .group_by(Shed.site_id)
        .subquery()
    )
    sheds = (
        select(
            Shed.site_id,
            func.count(Shed.id).label("sheds"),
            func.sum(Shed.id).label("shed_ids"),
            func.sum(Shed.operator_id).label("operators"),
            func.aggregate_strings(Shed.name + "\x1f" + Shed.location, "\x1e").label("names"),
        )
        .group_by(Shed.site_id)
        .subquery()
    )
    alerts = (
        select(Shed.site_id, func.count(Alert.id).label("alerts"), func.sum(Alert.id).label("alert_ids"))
        .join(Port, Port.id == Alert.port_id)
        .join(Shed, Shed.id == Port.shed_id)
        .where(Alert.cleared_at.is_(None), Alert.acknowledged_at.is_(None))
        .group_by(Shed.site_id)
        .subquery()
    )
    material = [
        ports.c.ports,
        ports.c.changed,
        ports.c.watts,
        ports.c.faults,
        ports.c.maintenance,
        ports.c.retired,
        ports.c.offline,
        ports.c.links_down,
        ports.c.stations_faulted,
        ports.c.stations_unavailable,
        sessions.c.live,
        sessions.c.live_ids,
        sessions.c.charging_ids,
        sheds.c.sheds,
        sheds.c.shed_ids,
        sheds.c.operators,
        sheds.c.names,
        alerts.c.alerts,
        alerts.c.alert_ids,
    ]
    return (
        select(
            Site.id.label("site_id"),
            ports.c.oldest_heard,
            OccupancyVersion.fingerprint.label("stored"),
            OccupancyVersion.offline_at.label("stored_offline_at"),
            OccupancyVersion.charging.label("stored_charging"),
            *material,
        )
        .outerjoin(ports, ports.c.site_id == Site.id)
        .outerjoin(sessions, sessions.c.site_id == Site.id)
        .outerjoin(sheds, sheds.c.site_id == Site.id)
        .outerjoin(alerts, alerts.c.site_id == Site.id)
        .outerjoin(OccupancyVersion, OccupancyVersion.site_id == Site.id)
    ), len(material)


def refresh_versions(now: datetime) -> int:
    """Bring every site's OccupancyVersion up to date; the supervisor tick calls this each round.

    One aggregate statement over all sites, then writes only the rows that changed. The version
    changes when a port's reading, service status or fault changes, when a port is seen offline,
    when a hardware port's device link goes down or comes back, when an OCPP station turns Faulted or
    Unavailable or back,
    when a charge starts or ends, when a shed is renamed or changes operator, and when an alert is
    raised or acknowledged. Inside the caller's transaction (the tick commits). Returns the number of
    rows written.
    """
    statement, width = _site_figures(now)
    inserts, updates = [], []
    for row in db.session.execute(statement):
        fingerprint = hashlib.sha1(repr(tuple(row[-width:])).encode()).hexdigest()[:24]
        offline_at = row.oldest_heard + timedelta(seconds=OFFLINE_AFTER_SECONDS) if row.oldest_heard else None
        charging = bool(row.live)
        if (row.stored, row.stored_offline_at, row.stored_charging) == (fingerprint, offline_at, charging):
            continue
        values = dict(
            site_id=row.site_id, fingerprint=fingerprint, offline_at=offline_at, charging=charging, refreshed_at=now
        )
        (inserts if row.stored is None else updates).append(values)
    if inserts:
        db.session.execute(insert(OccupancyVersion), inserts)
    if updates:
        db.session.execute(update(OccupancyVersion), updates)
    db.session.flush()
    return len(inserts) + len(updates)


def grid_version(site_id: int, now: datetime, *extra: object) -> str | None:
    """The grid's ETag from the site's version row: one primary-key read, no aggregate.

    None until a tick has recorded the site: then the grid is simply rendered. See version_of.
    """
    row = db.session.execute(
        select(OccupancyVersion.fingerprint, OccupancyVersion.offline_at, OccupancyVersion.charging).where(
            OccupancyVersion.site_id == site_id
        )
    ).first()
    return None if row is None else version_of(row.fingerprint, row.offline_at, row.charging, now, *extra)


def version_of(fingerprint: str, offline_at: datetime | None, charging: bool, now: datetime, *extra: object) -> str:
    """What a site shows now, from its stored version row (fingerprint, offline_at, charging).

    Besides the stored fingerprint it changes once a port the tick last saw alive has been silent
    for the offline debounce, and each minute while something charges (the grid shows charging
    time). `extra` adds the caller's own inputs (locale, user, page).
    """
    went_offline = offline_at is not None and now >= offline_at
    minute = now.strftime("%Y%m%d%H%M") if charging else ""
    material = repr((fingerprint, went_offline, minute, extra))
    return hashlib.sha1(material.encode()).hexdigest()[:24]
