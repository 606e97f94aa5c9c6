"""Usage figures: the sessions list and its CSV export, daily series, hour-of-week occupancy,
end-reason shares and the capacity hint.

Days and hours are the compound's local time (Asia/Shanghai); the database stores naive UTC.
Callers pass the sheds in scope as a subquery of ids (chargeshed.accounts.access.visible_shed_ids).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Select, func, or_, select

from chargeshed.accounts.models import User
from chargeshed.cells import neutral_text
from chargeshed.charging.models import ENDED, FAILED, ChargeSession
from chargeshed.extensions import db
from chargeshed.sites.models import PORT_ACTIVE, PORT_RETIRED, Port, Shed
from chargeshed.timeutil import LOCAL_TZ, to_local

CSV_BATCH = 1000
# Capacity hint thresholds.
FULL_HOURS_PER_WEEK_NEEDS_PORTS = 2.0
TIGHT_SHARE = 0.8


def local_day_start(day: date) -> datetime:
    """Local midnight of `day` as naive UTC (the storage convention)."""
    return datetime.combine(day, time(0), tzinfo=LOCAL_TZ).astimezone(UTC).replace(tzinfo=None)


def local_today(now: datetime) -> date:
    """Today in the compound, for a naive-UTC `now`."""
    return to_local(now).date()


@dataclass(frozen=True)
class SessionFilter:
    """What the sessions list is narrowed to; every field is optional."""

    shed_id: int | None = None
    port_number: int | None = None
    resident: str = ""
    date_from: date | None = None
    date_to: date | None = None  # inclusive
    end_reason: str = ""


def sessions_query(shed_ids: Select, filters: SessionFilter) -> Select:
    """Sessions with their port, shed and resident, newest first."""
    query = (
        select(ChargeSession, Port.number, Shed.name, User.login)
        .join(Port, Port.id == ChargeSession.port_id)
        .join(Shed, Shed.id == ChargeSession.shed_id)
        .join(User, User.id == ChargeSession.user_id)
        .where(ChargeSession.shed_id.in_(shed_ids))
    )
    if filters.shed_id is not None:
        query = query.where(ChargeSession.shed_id == filters.shed_id)
    if filters.port_number is not None:
        query = query.where(Port.number == filters.port_number)
    if filters.resident:
        query = query.where(User.login.contains(filters.resident, autoescape=True))
    if filters.date_from is not None:
        query = query.where(ChargeSession.created_at >= local_day_start(filters.date_from))
    if filters.date_to is not None:
        query = query.where(ChargeSession.created_at < local_day_start(filters.date_to + timedelta(days=1)))
    if filters.end_reason:
        query = query.where(ChargeSession.end_reason == filters.end_reason)
    return query.order_by(ChargeSession.id.desc())


def count_sessions(query: Select) -> int:
    """How many rows a sessions query has."""
    return db.session.execute(select(func.count()).select_from(query.order_by(None).subquery())).scalar_one()


def page_of(query: Select, page: int, per_page: int) -> tuple[list, bool]:
    """One page of rows and whether another follows."""
    rows = db.session.execute(query.offset((page - 1) * per_page).limit(per_page + 1)).all()
    return rows[:per_page], len(rows) > per_page


def mask_login(login: str) -> str:
    """A phone number with its middle hidden (138****0001); other logins unchanged."""
    if len(login) == 11 and login.isdigit():
        return f"{login[:3]}****{login[-4:]}"
    return login


def _fen_as_yuan(fen: int) -> str:
    yuan, rest = divmod(abs(fen), 100)
    return f"{'-' if fen < 0 else ''}{yuan}.{rest:02d}"


def _local(moment: datetime | None) -> str:
    local = to_local(moment)
    return local.strftime("%Y-%m-%d %H:%M:%S") if local else ""


CSV_COLUMNS = (
    "session_id",
    "started_local",
    "ended_local",
    "shed",
    "port",
    "resident",
    "state",
    "end_reason",
    "charged_minutes",
    "energy_wh",
    "cost_fen",
    "cost_yuan",
    "hold_fen",
)


def csv_lines(
    query: Select, now: datetime, *, header: dict[str, str], words: dict[str, str], mask_residents: bool = False
) -> Iterator[str]:
    """The sessions of `query` as CSV text, a few rows at a time (UTF-8 with BOM for spreadsheets).

    `header` names each of CSV_COLUMNS and `words` turns state and end-reason codes into words, both in
    the reader's language (the web layer passes them). Rows are fetched in batches on one result, so any
    date range streams in bounded memory.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow([header[column] for column in CSV_COLUMNS])
    yield "\ufeff" + flush()
    result = db.session.execute(query.execution_options(yield_per=CSV_BATCH))
    for n, (session, number, shed_name, login) in enumerate(result, start=1):
        writer.writerow(
            [
                neutral_text(value)
                for value in (
                    session.id,
                    _local(session.created_at),
                    _local(session.ended_at),
                    shed_name,
                    number,
                    mask_login(login) if mask_residents else login,
                    words.get(session.state, session.state),
                    words.get(session.end_reason, session.end_reason) if session.end_reason else "",
                    session.charged_seconds(now) // 60,
                    session.energy_wh,
                    session.cost_fen,
                    _fen_as_yuan(session.cost_fen),
                    session.hold_fen,
                )
            ]
        )
        if n % 200 == 0:
            yield flush()
    yield flush()


# Charts and capacity ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DayFigures:
    """One local day of a scope's usage."""

    day: date
    busy_seconds: int
    port_seconds: int
    energy_wh: int
    revenue_fen: int

    @property
    def utilisation_pct(self) -> float:
        """Share of port time in use, in percent."""
        return 100 * self.busy_seconds / self.port_seconds if self.port_seconds else 0.0


def _intervals(shed_ids: Select, start: datetime, end: datetime, now: datetime) -> Iterator[tuple]:
    """(shed_id, begin, finish) of every charge overlapping [start, end), clipped to it (naive UTC)."""
    rows = db.session.execute(
        select(ChargeSession.shed_id, ChargeSession.confirmed_at, ChargeSession.ended_at)
        .where(
            ChargeSession.shed_id.in_(shed_ids),
            ChargeSession.confirmed_at.is_not(None),
            ChargeSession.confirmed_at < end,
            or_(ChargeSession.ended_at.is_(None), ChargeSession.ended_at > start),
        )
        .execution_options(yield_per=CSV_BATCH)
    )
    for shed_id, begin, finish in rows:
        begin, finish = max(begin, start), min(finish or now, end, now)
        if finish > begin:
            yield shed_id, begin, finish


def _hour_pieces(begin: datetime, finish: datetime) -> Iterator[tuple[datetime, int]]:
    """Split a naive-UTC interval at local hour boundaries: (local hour start, seconds in it)."""
    local, local_end = to_local(begin), to_local(finish)
    while local < local_end:
        hour = local.replace(minute=0, second=0, microsecond=0)
        nxt = min(hour + timedelta(hours=1), local_end)
        yield hour, int((nxt - local).total_seconds())
        local = nxt


def in_service_ports(shed_ids: Select) -> dict[int, int]:
    """Ports that can be used (active) per shed."""
    rows = db.session.execute(
        select(Port.shed_id, func.count(Port.id))
        .where(Port.shed_id.in_(shed_ids), Port.status == PORT_ACTIVE)
        .group_by(Port.shed_id)
    ).all()
    return dict(rows)


def daily(shed_ids: Select, first: date, last: date, now: datetime) -> list[DayFigures]:
    """Per local day from `first` to `last` (inclusive): port time in use, energy and revenue.

    Available port time is today's non-retired ports times 24 h. Energy and revenue count
    sessions by the day they ended; revenue is the settled cost of each charge.
    """
    start, end = local_day_start(first), local_day_start(last + timedelta(days=1))
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    busy = dict.fromkeys(days, 0)
    for _shed, begin, finish in _intervals(shed_ids, start, end, now):
        for hour, seconds in _hour_pieces(begin, finish):
            busy[hour.date()] += seconds
    energy = dict.fromkeys(days, 0)
    revenue = dict.fromkeys(days, 0)
    ended = db.session.execute(
        select(ChargeSession.ended_at, ChargeSession.energy_wh, ChargeSession.cost_fen)
        .where(
            ChargeSession.shed_id.in_(shed_ids),
            ChargeSession.state == ENDED,
            ChargeSession.ended_at >= start,
            ChargeSession.ended_at < end,
        )
        .execution_options(yield_per=CSV_BATCH)
    )
    for ended_at, wh, fen in ended:
        day = to_local(ended_at).date()
        energy[day] += wh
        revenue[day] += fen
    ports = db.session.execute(
        select(func.count(Port.id)).where(Port.shed_id.in_(shed_ids), Port.status != PORT_RETIRED)
    ).scalar_one()
    return [DayFigures(day, busy[day], ports * 86400, energy[day], revenue[day]) for day in days]


@dataclass
class ShedUsage:
    """A shed's hour-of-week occupancy and what it says about capacity."""

    shed_id: int
    name: str
    ports: int
    # busy[weekday][hour]: average ports in use (Monday = 0), over the days in the range.
    busy: list[list[float]]
    peak: int
    full_seconds: int
    days: int

    def percent(self, weekday: int, hour: int) -> float:
        """Average share of ports in use at this hour of the week, in percent."""
        return 100 * self.busy[weekday][hour] / self.ports if self.ports else 0.0

    @property
    def busiest(self) -> tuple[int, int, float]:
        """(weekday, hour, percent) of the busiest hour of the week."""
        return max(((d, h, self.percent(d, h)) for d in range(7) for h in range(24)), key=lambda c: c[2])

    @property
    def full_hours_per_week(self) -> float:
        """Hours a week with every port in use."""
        return self.full_seconds / 3600 * 7 / self.days if self.days else 0.0

    @property
    def hint(self) -> str:
        """'add_ports', 'tight' or 'ok' (see the thresholds above)."""
        if not self.ports:
            return "ok"
        if self.full_hours_per_week >= FULL_HOURS_PER_WEEK_NEEDS_PORTS:
            return "add_ports"
        if self.peak >= self.ports * TIGHT_SHARE or self.busiest[2] >= 100 * TIGHT_SHARE:
            return "tight"
        return "ok"


def shed_usage(shed_ids: Select, first: date, last: date, now: datetime) -> list[ShedUsage]:
    """Hour-of-week occupancy, peak concurrent charges and time full, per shed in scope."""
    start, end = local_day_start(first), local_day_start(last + timedelta(days=1))
    days = (last - first).days + 1
    weekdays = [0] * 7
    for n in range(days):
        weekdays[(first + timedelta(days=n)).weekday()] += 1
    sheds = db.session.execute(
        select(Shed.id, Shed.name).where(Shed.id.in_(shed_ids)).order_by(Shed.name, Shed.id)
    ).all()
    seconds = {shed_id: [[0] * 24 for _ in range(7)] for shed_id, _ in sheds}
    edges: dict[int, list[tuple[datetime, int]]] = {shed_id: [] for shed_id, _ in sheds}
    for shed_id, begin, finish in _intervals(shed_ids, start, end, now):
        for hour, secs in _hour_pieces(begin, finish):
            seconds[shed_id][hour.weekday()][hour.hour] += secs
        edges[shed_id] += [(begin, 1), (finish, -1)]
    ports = in_service_ports(shed_ids)
    result = []
    for shed_id, name in sheds:
        busy = [
            [seconds[shed_id][d][h] / (3600 * weekdays[d]) if weekdays[d] else 0.0 for h in range(24)] for d in range(7)
        ]
        peak, full = _peak_and_full(edges[shed_id], ports.get(shed_id, 0))
        result.append(ShedUsage(shed_id, name, ports.get(shed_id, 0), busy, peak, full, days))
    return result


def _peak_and_full(edges: list[tuple[datetime, int]], ports: int) -> tuple[int, int]:
    """Most charges at once, and seconds with at least `ports` charges (ends sort before starts)."""
    peak = running = full = 0
    previous = None
    for moment, step in sorted(edges):
        if previous is not None and ports and running >= ports:
            full += int((moment - previous).total_seconds())
        running += step
        peak = max(peak, running)
        previous = moment
    return peak, full


def end_reason_shares(shed_ids: Select, first: date, last: date) -> list[tuple[str, int, float]]:
    """(reason, count, percent) of sessions that ended or failed in the range, most common first."""
    start, end = local_day_start(first), local_day_start(last + timedelta(days=1))
    rows = db.session.execute(
        select(ChargeSession.end_reason, func.count(ChargeSession.id))
        .where(
            ChargeSession.shed_id.in_(shed_ids),
            ChargeSession.state.in_((ENDED, FAILED)),
            ChargeSession.ended_at >= start,
            ChargeSession.ended_at < end,
        )
        .group_by(ChargeSession.end_reason)
    ).all()
    total = sum(count for _, count in rows)
    shares = [(reason or "", count, 100 * count / total) for reason, count in rows]
    return sorted(shares, key=lambda s: (-s[1], s[0]))
