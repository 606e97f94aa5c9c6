"""Figures that show the effect: open cases by age and building, overdue deadlines, time to close,
weekly hazard reports per building next to shed utilisation, and the monthly summary."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import func, select

from chargeshed.charging.models import ChargeSession
from chargeshed.extensions import db
from chargeshed.safety.models import (
    CLOSED,
    DEADLINE_SET,
    HAZARD_TYPES,
    INCIDENT_KINDS,
    REPORTED,
    CaseEvent,
    HazardCase,
    Incident,
)
from chargeshed.sites.models import PORT_RETIRED, Building, Port, Shed
from chargeshed.timeutil import LOCAL_TZ, to_local

# Age buckets of open cases, in whole days: (from, to inclusive or None).
AGE_BUCKETS = ((0, 2), (3, 7), (8, 30), (31, None))


def local_midnight_utc(day: date) -> datetime:
    """The compound's local midnight starting `day`, as naive UTC (the storage convention)."""
    return datetime(day.year, day.month, day.day, tzinfo=LOCAL_TZ).astimezone(UTC).replace(tzinfo=None)


def local_end_of_day_utc(day: date) -> datetime:
    """The last second of `day` in local time, as naive UTC (used for deadlines)."""
    return local_midnight_utc(day + timedelta(days=1)) - timedelta(seconds=1)


def local_today(now: datetime) -> date:
    """The compound's local date at naive-UTC `now`."""
    return to_local(now).date()


def bucket_of(days: int) -> int:
    """Index of the age bucket for an age in whole days."""
    for index, (low, high) in enumerate(AGE_BUCKETS):
        if days >= low and (high is None or days <= high):
            return index
    return 0


def _open_cases(site_id: int) -> list[HazardCase]:
    return list(
        db.session.execute(
            select(HazardCase)
            .where(HazardCase.site_id == site_id, HazardCase.state != CLOSED)
            .order_by(HazardCase.created_at)
        ).scalars()
    )


@dataclass
class AgeRow:
    """Open cases of one building, counted per age bucket."""

    building: int
    counts: list[int]

    @property
    def total(self) -> int:
        """Open cases of the building, all ages."""
        return sum(self.counts)


def open_by_age_and_building(site_id: int, now: datetime) -> list[AgeRow]:
    """Open cases per building (rows) and age bucket (columns); buildings with none are left out."""
    rows: dict[int, list[int]] = {}
    for case in _open_cases(site_id):
        counts = rows.setdefault(case.building.number, [0] * len(AGE_BUCKETS))
        counts[bucket_of((now - case.created_at).days)] += 1
    return [AgeRow(number, counts) for number, counts in sorted(rows.items())]


def overdue_cases(site_id: int, now: datetime) -> list[HazardCase]:
    """Cases whose rectification deadline has passed, most overdue first."""
    return list(
        db.session.execute(
            select(HazardCase)
            .where(HazardCase.site_id == site_id, HazardCase.state == DEADLINE_SET, HazardCase.deadline_at < now)
            .order_by(HazardCase.deadline_at)
        ).scalars()
    )


def awaiting_first_check(site_id: int, now: datetime, hours: int) -> list[HazardCase]:
    """Reports nobody has checked on site within the promised reply time."""
    return list(
        db.session.execute(
            select(HazardCase)
            .where(
                HazardCase.site_id == site_id,
                HazardCase.state == REPORTED,
                HazardCase.created_at < now - timedelta(hours=hours),
            )
            .order_by(HazardCase.created_at)
        ).scalars()
    )


def median_hours_to_close(site_id: int, start: datetime | None = None, end: datetime | None = None) -> float | None:
    """Median hours from report to close, over cases closed in [start, end); None when none closed."""
    query = select(HazardCase.created_at, HazardCase.closed_at).where(
        HazardCase.site_id == site_id, HazardCase.state == CLOSED
    )
    if start is not None:
        query = query.where(HazardCase.closed_at >= start)
    if end is not None:
        query = query.where(HazardCase.closed_at < end)
    durations = [(closed - created).total_seconds() / 3600 for created, closed in db.session.execute(query)]
    return statistics.median(durations) if durations else None


@dataclass
class Trend:
    """Weekly figures: hazard reports per building, and shed use, for the same weeks."""

    weeks: list[date]
    reports: dict[int, list[int]]
    utilisation: list[float]
    charges: list[int]
    buildings: list[int] = field(default_factory=list)

    @property
    def report_totals(self) -> list[int]:
        """Reports per week, all buildings together."""
        return [sum(counts[i] for counts in self.reports.values()) for i in range(len(self.weeks))]


def week_start(day: date) -> date:
    """The Monday of the week containing `day`."""
    return day - timedelta(days=day.weekday())


def weekly_trend(site_id: int, now: datetime, weeks: int = 12, last_week: date | None = None) -> Trend:
    """Reports per building and shed utilisation (% of port time charging) for the last `weeks` weeks."""
    last = week_start(last_week or local_today(now))
    starts = [last - timedelta(weeks=weeks - 1 - i) for i in range(weeks)]
    bounds = [local_midnight_utc(d) for d in starts] + [local_midnight_utc(last + timedelta(weeks=1))]
    buildings = list(
        db.session.execute(
            select(Building.number).where(Building.site_id == site_id).order_by(Building.number)
        ).scalars()
    )
    reports = {number: [0] * weeks for number in buildings}
    rows = db.session.execute(
        select(Building.number, HazardCase.created_at)
        .join(Building, Building.id == HazardCase.building_id)
        .where(
            HazardCase.site_id == site_id,
            HazardCase.created_at >= bounds[0],
            HazardCase.created_at < bounds[-1],
            HazardCase.outcome.is_distinct_from("duplicate"),
        )
    )
    for number, created in rows:
        reports.setdefault(number, [0] * weeks)[_index(bounds, created)] += 1
    utilisation, charges = _shed_use(site_id, bounds, now)
    return Trend(starts, reports, utilisation, charges, buildings)


def _index(bounds: list[datetime], moment: datetime) -> int:
    for i in range(len(bounds) - 1):
        if bounds[i] <= moment < bounds[i + 1]:
            return i
    return len(bounds) - 2


def _percent(part: float, whole: float) -> float:
    """100 × part / whole to one decimal, rounded half up (6.25 → 6.3, as a reader rounds it)."""
    if whole <= 0:
        return 0.0
    return float((Decimal(100 * part) / Decimal(whole)).quantize(Decimal("0.1"), ROUND_HALF_UP))


def _shed_use(site_id: int, bounds: list[datetime], now: datetime) -> tuple[list[float], list[int]]:
    """Per period: % of port time spent charging in the site's sheds, and charges started."""
    periods = len(bounds) - 1
    ports = db.session.execute(
        select(func.count(Port.id))
        .join(Shed, Shed.id == Port.shed_id)
        .where(Shed.site_id == site_id, Port.status != PORT_RETIRED)
    ).scalar_one()
    charged = [0.0] * periods
    charges = [0] * periods
    rows = db.session.execute(
        select(ChargeSession.confirmed_at, ChargeSession.ended_at)
        .join(Shed, Shed.id == ChargeSession.shed_id)
        .where(
            Shed.site_id == site_id,
            ChargeSession.confirmed_at.is_not(None),
            ChargeSession.confirmed_at < bounds[-1],
            (ChargeSession.ended_at.is_(None)) | (ChargeSession.ended_at >= bounds[0]),
        )
    )
    for started, ended in rows:
        ended = ended or now
        if bounds[0] <= started < bounds[-1]:
            charges[_index(bounds, started)] += 1
        for i in range(periods):
            overlap = (min(ended, bounds[i + 1]) - max(started, bounds[i])).total_seconds()
            if overlap > 0:
                charged[i] += overlap
    utilisation = []
    for i in range(periods):
        capacity = ports * (min(bounds[i + 1], max(now, bounds[i])) - bounds[i]).total_seconds()
        utilisation.append(_percent(charged[i], capacity))
    return utilisation, charges


@dataclass
class MonthSummary:
    """The month's figures for the owners' committee."""

    site_id: int
    year: int
    month: int
    start: datetime
    end: datetime
    reports: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    by_building: dict[int, int] = field(default_factory=dict)
    closed: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)
    open_at_end: list[HazardCase] = field(default_factory=list)
    overdue_at_end: int = 0
    median_hours: float | None = None
    reminders: int = 0
    moved: int = 0
    escalations: dict[str, int] = field(default_factory=dict)
    incidents: dict[str, int] = field(default_factory=dict)
    shed_charges: int = 0
    shed_kwh: float = 0.0
    previous_reports: int = 0
    trend: Trend | None = None


def month_bounds(year: int, month: int) -> tuple[datetime, datetime]:
    """[start, end) of a local calendar month, as naive UTC."""
    first = date(year, month, 1)
    following = date(year + month // 12, month % 12 + 1, 1)
    return local_midnight_utc(first), local_midnight_utc(following)


def month_summary(site_id: int, year: int, month: int, now: datetime) -> MonthSummary:
    """Everything the monthly PDF shows, for one site and local calendar month."""
    start, end = month_bounds(year, month)
    cut = min(end, now)
    summary = MonthSummary(site_id, year, month, start, end)
    received = list(
        db.session.execute(
            select(HazardCase).where(
                HazardCase.site_id == site_id, HazardCase.created_at >= start, HazardCase.created_at < end
            )
        ).scalars()
    )
    summary.reports = len(received)
    types = Counter(c.hazard_type for c in received)
    summary.by_type = {t: types[t] for t in HAZARD_TYPES if types[t]}
    summary.by_building = dict(sorted(Counter(c.building.number for c in received).items()))
    closed = list(
        db.session.execute(
            select(HazardCase).where(
                HazardCase.site_id == site_id, HazardCase.closed_at >= start, HazardCase.closed_at < end
            )
        ).scalars()
    )
    summary.closed = len(closed)
    summary.by_outcome = dict(Counter(c.outcome for c in closed))
    summary.median_hours = median_hours_to_close(site_id, start, end)
    summary.open_at_end = list(
        db.session.execute(
            select(HazardCase)
            .where(
                HazardCase.site_id == site_id,
                HazardCase.created_at < cut,
                (HazardCase.closed_at.is_(None)) | (HazardCase.closed_at >= cut),
            )
            .order_by(HazardCase.created_at)
        ).scalars()
    )
    summary.overdue_at_end = sum(
        1 for c in summary.open_at_end if c.deadline_at is not None and c.deadline_at < cut and c.state == DEADLINE_SET
    )
    events = db.session.execute(
        select(CaseEvent.action, CaseEvent.target)
        .join(HazardCase, HazardCase.id == CaseEvent.case_id)
        .where(HazardCase.site_id == site_id, CaseEvent.at >= start, CaseEvent.at < end)
    ).all()
    summary.reminders = sum(1 for action, _target in events if action == "notify")
    summary.moved = sum(1 for action, _target in events if action == "move_bike")
    summary.escalations = dict(Counter(target for action, target in events if action == "escalate"))
    incidents = Counter(
        db.session.execute(
            select(Incident.kind)
            .join(Shed, Shed.id == Incident.shed_id)
            .where(Shed.site_id == site_id, Incident.opened_at >= start, Incident.opened_at < end)
        ).scalars()
    )
    summary.incidents = {k: incidents[k] for k in INCIDENT_KINDS if incidents[k]}
    count, energy = db.session.execute(
        select(func.count(ChargeSession.id), func.coalesce(func.sum(ChargeSession.energy_wh), 0))
        .join(Shed, Shed.id == ChargeSession.shed_id)
        .where(
            Shed.site_id == site_id,
            ChargeSession.state == "ended",
            ChargeSession.ended_at >= start,
            ChargeSession.ended_at < end,
        )
    ).one()
    summary.shed_charges, summary.shed_kwh = count, round(energy / 1000, 1)
    previous_start, _end = month_bounds(year - (month == 1), 12 if month == 1 else month - 1)
    summary.previous_reports = db.session.execute(
        select(func.count(HazardCase.id)).where(
            HazardCase.site_id == site_id,
            HazardCase.created_at >= previous_start,
            HazardCase.created_at < start,
        )
    ).scalar_one()
    last_day = (end - timedelta(seconds=1)) if end <= now else now
    summary.trend = weekly_trend(site_id, now, weeks=8, last_week=local_today(last_day))
    return summary
