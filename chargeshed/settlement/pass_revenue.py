"""包月 revenue on statements: each day's recognised pass revenue of a site, shared out to its sheds.

A pass is bought for a whole site: it may be used at any port of any shed there, while statements and
agreements are per shed. So each local day's pass revenue of a site (recognised per day of validity by
`chargeshed.passes.service`) is shared between the site's sheds in proportion to their ports that are
not retired, when the figures are made, by largest remainder; the odd fen of a tie go to the sheds in
turn, one day to the next, so no shed gains from rounding over a month. A site whose sheds have no such
port shares it equally. The parts of a day add up exactly to that day's revenue.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

from sqlalchemy import func, select

from chargeshed.extensions import db
from chargeshed.money.models import LedgerTxn
from chargeshed.passes.models import MonthlyPass
from chargeshed.passes.service import TXN_PASS_REFUND, recognised_before, recognised_by_site_day
from chargeshed.settlement.periods import Period
from chargeshed.settlement.split import largest_remainder
from chargeshed.sites.models import PORT_RETIRED, Port, Shed


def port_weights(site_ids: list[int]) -> dict[int, list[tuple[int, int]]]:
    """Per site: (shed id, ports not retired) for every shed, by shed id."""
    if not site_ids:
        return {}
    ports = (
        select(Port.shed_id, func.count(Port.id).label("ports"))
        .where(Port.status != PORT_RETIRED)
        .group_by(Port.shed_id)
        .subquery()
    )
    rows = db.session.execute(
        select(Shed.site_id, Shed.id, func.coalesce(ports.c.ports, 0))
        .outerjoin(ports, ports.c.shed_id == Shed.id)
        .where(Shed.site_id.in_(site_ids))
        .order_by(Shed.site_id, Shed.id)
    ).all()
    out: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for site_id, shed_id, count in rows:
        out[site_id].append((shed_id, int(count)))
    return out


def pass_revenue_by_shed_day(period: Period) -> dict[tuple[int, date], int]:
    """Pass revenue of every site's sheds per (shed id, local day) in the period, shared out as above."""
    by_site = recognised_by_site_day(period.start, period.end + timedelta(days=1))
    weights = port_weights(sorted({site_id for site_id, _day in by_site}))
    out: dict[tuple[int, date], int] = {}
    for (site_id, day), amount in sorted(by_site.items()):
        sheds = weights.get(site_id)
        if not sheds:
            continue  # a site without sheds has no statement to carry it
        turn = day.toordinal() % len(sheds)
        in_turn = sheds[turn:] + sheds[:turn]
        parts = largest_remainder(amount, [count for _shed, count in in_turn])
        for (shed_id, _count), part in zip(in_turn, parts, strict=True):
            if part:
                out[(shed_id, day)] = part
    return out


def passes_unearned(period: Period) -> int:
    """What residents had paid for passes at the end of the period for days after it (all sites): the
    price of each pass bought by then, less its refund if booked by then, less what its days up to the
    period's end earned. Money residents hold a right to, not revenue yet."""
    _start, end = period.utc_bounds()
    refunded = {
        int(ref.rsplit(":", 1)[1])
        for (ref,) in db.session.execute(
            select(LedgerTxn.ref).where(LedgerTxn.kind == TXN_PASS_REFUND, LedgerTxn.booked_at < end)
        )
    }
    bought = db.session.execute(
        select(MonthlyPass).where(MonthlyPass.created_at < end, MonthlyPass.ends_on > period.end + timedelta(days=1))
    ).scalars()
    after = period.end + timedelta(days=1)
    return sum(p.price_fen - recognised_before(p, after) for p in bought if p.id not in refunded)
