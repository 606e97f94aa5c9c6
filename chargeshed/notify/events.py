"""Business events that notify residents: a charge finished, a port freed up (one-shot watches)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from chargeshed.extensions import db
from chargeshed.money.format import format_fen
from chargeshed.notify.base import CHARGE_FINISHED, PORT_FREE
from chargeshed.notify.models import PortFreeWatch
from chargeshed.notify.outbox import Message, queue_for_user, queue_for_users

# The end reason as a WeChat "phrase" (at most 5 characters) and in SMS text.
REASON_WORDS = {
    "full": "已充满",
    "time_up": "时间已到",
    "hold_exhausted": "预付用完",
    "unplugged": "已拔出",
    "overload": "功率过载",
    "user_stop": "手动停止",
    "staff_stop": "人工停止",
    "port_fault": "插座故障",
    "offline": "插座离线",
    "over_pass_tier": "超出包月档",
}
WATCH_HOURS = 2


def charge_finished(session, now: datetime) -> int:
    """Queue "your charge finished" (where, why, cost) on the resident's channels; caller commits."""
    return charges_finished([(session, now)])


def charges_finished(finished) -> int:
    """charge_finished for many (session, ended at) pairs, in a fixed number of statements."""
    from chargeshed.sites.models import Port, Shed

    if not finished:
        return 0
    places = {
        port_id: f"{shed}{number}号插座"
        for port_id, shed, number in db.session.execute(
            select(Port.id, Shed.name, Port.number)
            .join(Shed, Shed.id == Port.shed_id)
            .where(Port.id.in_({session.port_id for session, _at in finished}))
        )
    }
    return queue_for_users(
        [
            Message(
                session.user_id,
                CHARGE_FINISHED,
                {
                    "place": places[session.port_id],
                    "reason": REASON_WORDS.get(session.end_reason, session.end_reason or ""),
                    "cost": format_fen(session.cost_fen, symbol="") + "元",
                },
                f"charge_finished:{session.id}",
                at,
            )
            for session, at in finished
        ]
    )


def watch_shed(user_id: int, shed_id: int, now: datetime, hours: int = WATCH_HOURS) -> PortFreeWatch:
    """ "Tell me when a port here is free": one live watch per resident and shed (renewed if asked again)."""
    watch = db.session.execute(
        select(PortFreeWatch).where(
            PortFreeWatch.user_id == user_id,
            PortFreeWatch.shed_id == shed_id,
            PortFreeWatch.fired_at.is_(None),
            PortFreeWatch.expires_at > now,
        )
    ).scalar_one_or_none()
    if watch is None:
        watch = PortFreeWatch(user_id=user_id, shed_id=shed_id, created_at=now)
        db.session.add(watch)
    watch.expires_at = now + timedelta(hours=hours)
    db.session.flush()
    return watch


def fire_port_free_watches(now: datetime) -> int:
    """Queue one message per live watch whose shed has a free port; a fired or expired watch sends
    nothing. Flushes; the caller commits."""
    from chargeshed.charging.occupancy import occupancy
    from chargeshed.sites.models import Shed

    watches = list(
        db.session.execute(
            select(PortFreeWatch)
            .where(PortFreeWatch.fired_at.is_(None), PortFreeWatch.expires_at > now)
            .order_by(PortFreeWatch.id)
        ).scalars()
    )
    if not watches:
        return 0
    shed_ids = {watch.shed_id for watch in watches}
    blocks = {block.shed_id: block for block in occupancy(select(Shed.id).where(Shed.id.in_(shed_ids)), now)}
    fired = 0
    for watch in watches:
        block = blocks.get(watch.shed_id)
        if block is None or not block.counts["free"]:
            continue
        free = [str(cell.number) for cell in block.cells if cell.state == "free"]
        queue_for_user(
            watch.user_id,
            PORT_FREE,
            {"place": block.name, "free": f"{len(free)}个空闲：{'、'.join(free[:5])}号"},
            f"port_free:{watch.id}",
            now,
        )
        watch.fired_at = now
        fired += 1
    db.session.flush()
    return fired
