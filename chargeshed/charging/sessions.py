"""Charge session services: start, confirm, end, fail.

Every service works inside the caller's transaction: the boundary that opened it (a request, a CLI
command, a worker step, a gateway message) commits. A service undoes only its own part (a savepoint)
or raises; it never commits or rolls back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from chargeshed.charging.models import (
    CHARGING,
    ENDED,
    FAILED,
    LIVE_STATES,
    PENDING,
    ChargeSession,
    SessionEvent,
)
from chargeshed.charging.tariff import average_watts
from chargeshed.extensions import db
from chargeshed.money import ledger
from chargeshed.notify import events as notify_events
from chargeshed.ports import outbox
from chargeshed.ports.driver import FAULTED, UNAVAILABLE
from chargeshed.ports.models import CMD_START, CMD_STOP
from chargeshed.ports.telemetry import OFFLINE_AFTER_SECONDS, port_offline  # noqa: F401  (re-exported)
from chargeshed.sites.models import PORT_MAINTENANCE, PORT_RETIRED, Port
from chargeshed.timeutil import now as clock_now

# End reasons, in the words residents see (translated in templates via END_REASONS).
FULL = "full"
TIME_UP = "time_up"
HOLD_EXHAUSTED = "hold_exhausted"
UNPLUGGED = "unplugged"
OVERLOAD = "overload"
OVERHEAT = "overheat"
USER_STOP = "user_stop"
STAFF_STOP = "staff_stop"
PORT_FAULT = "port_fault"
OFFLINE = "offline"
START_FAILED = "start_failed"
OVER_PASS_TIER = "over_pass_tier"

log = logging.getLogger(__name__)
_UNKNOWN = object()


class StartRefused(Exception):
    """A start that cannot happen; `code` says why (shown to the resident)."""

    def __init__(self, code: str, session: ChargeSession | None = None):
        super().__init__(code)
        self.code = code
        self.session = session


def live_session_on_port(port_id: int) -> ChargeSession | None:
    """The pending or charging session on a port, if any."""
    return db.session.execute(
        select(ChargeSession).where(ChargeSession.port_id == port_id, ChargeSession.state.in_(LIVE_STATES))
    ).scalar_one_or_none()


def refusal_for_port(port: Port, now: datetime, live=_UNKNOWN) -> str | None:
    """Why a start on this port is impossible now, or None when it may start.

    Pass `live` (the port's live session or None) when the caller has it already, to save a query.
    """
    if port.status == PORT_RETIRED:
        return "port_retired"
    if port.status == PORT_MAINTENANCE or port.ocpp_state == UNAVAILABLE:
        return "port_maintenance"
    if port.ocpp_state == FAULTED or port.fault:
        return "port_fault"
    if port_offline(port, now):
        return "port_offline"
    if live is _UNKNOWN:
        live = live_session_on_port(port.id)
    return "port_busy" if live is not None else None


def _event(session: ChargeSession, kind: str, at: datetime, detail: str = "") -> None:
    db.session.add(SessionEvent(session_id=session.id, kind=kind, at=at, detail=detail[:255]))


def start_session(
    user_id: int, port: Port, *, now: datetime | None = None, topup=None, terms=None, on_new=None
) -> ChargeSession:
    """Reserve the hold from the wallet and queue the start command, inside the caller's transaction.

    `terms` replaces the shed's tariff (a monthly-pass charge: no hold, free at stop); `on_new(session)`
    runs for a newly created session in the same transaction (e.g. to count it against the pass).

    The caller (the request, worker step or command that started the transaction) commits. A
    second start by the same resident on a port they already hold (a double tap) returns their
    live session (and still links `topup` to it). Raises StartRefused otherwise; what this
    function wrote is then undone through its own savepoint, never the caller's other work.

    Races are settled by the database: the partial unique index uq_charge_session_live_port
    admits one live session per port, and the ledger's CHECK constraint keeps the wallet
    from going negative when one resident starts on many ports at once. The port row is
    locked first (FOR UPDATE on PostgreSQL), so a start and a switch to maintenance or
    retirement are serialised: no live session remains on a port in maintenance.
    """
    now = now or clock_now()
    port = lock_port(port)
    existing = live_session_on_port(port.id)
    if existing is not None and existing.user_id == user_id:
        return _link_topup(existing, topup)
    refusal = refusal_for_port(port, now, existing)
    if refusal:
        raise StartRefused(refusal)
    terms = terms or port.shed.tariff.terms
    hold_fen = 0 if terms.pass_max_watts else terms.hold_fen  # a monthly-pass charge reserves nothing
    if ledger.wallet_balance(user_id) < hold_fen:
        raise StartRefused("insufficient_funds")
    session = ChargeSession(
        user_id=user_id,
        port_id=port.id,
        shed_id=port.shed_id,
        rules=terms.to_dict(),
        state=PENDING,
        hold_fen=hold_fen,
        created_at=now,
    )
    try:
        with db.session.begin_nested():  # our own part only: a refusal undoes nothing else
            db.session.add(session)
            db.session.flush()
            if session.hold_fen:  # a monthly-pass charge reserves nothing
                ledger.post(
                    f"hold:{session.id}",
                    "hold",
                    [
                        ledger.Leg(ledger.wallet_account(user_id), -session.hold_fen),
                        ledger.Leg(ledger.holds_account(), session.hold_fen),
                    ],
                    memo=f"hold for session {session.id}",
                    at=now,
                )
    except IntegrityError:
        existing = live_session_on_port(port.id)
        if existing is not None and existing.user_id == user_id:
            return _link_topup(existing, topup)
        raise StartRefused("port_busy") from None
    except ledger.InsufficientFunds:
        raise StartRefused("insufficient_funds") from None
    # The device switches off by itself after the longest charge the tariff allows (if we are gone).
    outbox.enqueue(port.id, CMD_START, session_id=session.id, cap_seconds=terms.max_minutes * 60)
    _event(session, "requested", now, f"port {port.code}")
    _link_topup(session, topup)
    if on_new is not None:
        on_new(session)
    db.session.flush()
    log.info(
        "session started",
        extra={
            "event": "session.start",
            "session_id": session.id,
            "user_id": user_id,
            "port": port.code,
            "hold_fen": session.hold_fen,
            "ledger_ref": f"hold:{session.id}",
        },
    )
    return session


def lock_port(port: Port) -> Port:
    """The port row, locked until the caller's transaction ends (PostgreSQL; SQLite serialises writers).

    FOR NO KEY UPDATE: starts and maintenance changes on one port wait for each other, while rows
    that merely refer to the port (sessions, commands, readings) can still be written.
    """
    return db.session.execute(
        select(Port).where(Port.id == port.id).with_for_update(key_share=True).execution_options(populate_existing=True)
    ).scalar_one()


def _link_topup(session: ChargeSession, topup) -> ChargeSession:
    if topup is not None and topup.started_session_id is None:
        topup.started_session_id = session.id
    return session


def confirm_started(session_id: int, now: datetime) -> bool:
    """The port reports the relay closed: the pending session charges from now (caller commits).

    A conditional UPDATE, so a start cancelled meanwhile is never revived. False if it was not pending.
    """
    claimed = db.session.execute(
        update(ChargeSession)
        .where(ChargeSession.id == session_id, ChargeSession.state == PENDING)
        .values(state=CHARGING, confirmed_at=now, bucket_started_at=now, bucket_start_wh=0)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed:
        db.session.add(SessionEvent(session_id=session_id, kind="charging", at=now, detail=""))
    return bool(claimed)


def mark_charging(session: ChargeSession, now: datetime) -> bool:
    """confirm_started for a loaded session, keeping its attributes in step (caller commits)."""
    if not confirm_started(session.id, now):
        return False
    for name, value in (("state", CHARGING), ("confirmed_at", now), ("bucket_started_at", now), ("bucket_start_wh", 0)):
        set_committed_value(session, name, value)
    return True


def current_tier_watts(session: ChargeSession, now: datetime) -> int:
    """Power that decides the tier: the highest 5-minute average once one is complete.

    Before the first 5-minute window closes, the higher of the average so far and the latest reading:
    whole-Wh meter readings make an early average too low, and a price that jumps a tier at minute five
    reads as a broken promise. From the first reading the resident sees the tier they will pay.
    """
    if session.tier_watts or session.confirmed_at is None:
        return session.tier_watts
    seconds = (now - session.confirmed_at).total_seconds()
    if seconds <= 0:
        return session.watts
    return max(average_watts(session.energy_wh, seconds), session.watts)


def tier_is_provisional(session: ChargeSession) -> bool:
    """True while no complete 5-minute average exists yet (the tier follows the latest reading)."""
    return not session.tier_watts


def compute_cost(session: ChargeSession, at: datetime) -> int:
    """What the session costs if it ends at `at` (fen, never above the hold)."""
    return session.terms.cost(session.charged_seconds(at), current_tier_watts(session, at), session.energy_wh)


def cost_now(session: ChargeSession, now: datetime) -> int:
    """The booked cost of a finished session, or the running cost of a live one."""
    if session.state in (ENDED, FAILED):
        return session.cost_fen
    return compute_cost(session, now)


@dataclass(frozen=True)
class Ending:
    """A live session to end: ENDED (billed) or FAILED (the whole hold back), for `reason` at `at`."""

    session_id: int
    state: str
    reason: str
    at: datetime
    detail: str = ""
    stop_port: bool = True


def settle(endings: list[Ending]) -> list[ChargeSession]:
    """End and settle sessions together, inside the caller's transaction (the caller commits).

    Each session still live moves to its final state, books its hold in one balanced transaction
    (cost to the shed's revenue, the rest back to the wallet; dated by its end instant, the one that
    dates its energy and count, so a session never falls into two statements), queues its port's
    stop, writes its event and tells its resident. A fixed number of statements whatever the
    number of sessions. Returns the sessions ended here (loaded ones refreshed in place); one
    already ended is left as it is.
    Raises if any of them cannot be settled, and then the caller must undo all of them (roll back,
    or a savepoint around the call): the supervisor then settles each again alone.
    """
    by_id = {ending.session_id: ending for ending in endings}
    ended = sorted(_claim(by_id), key=lambda session: session.id)
    if not ended:
        return []
    costs = {}
    for session in ended:
        cost = compute_cost(session, session.ended_at) if session.state == ENDED else 0
        if not 0 <= cost <= session.hold_fen:
            raise ledger.LedgerError(f"cost {cost} outside hold {session.hold_fen} of session {session.id}")
        costs[session.id] = cost
    billed = {session_id: cost for session_id, cost in costs.items() if cost}
    if billed:
        db.session.execute(
            update(ChargeSession)
            .where(ChargeSession.id.in_(billed))
            .values(cost_fen=_per_row(billed))
            .execution_options(synchronize_session=False)
        )
    for session in ended:
        set_committed_value(session, "cost_fen", costs[session.id])
    held = [session for session in ended if session.hold_fen]  # a monthly-pass charge reserved nothing
    if held:
        ledger.preload_accounts(
            [ledger.HOLDS_CODE]
            + [ledger.wallet_code(session.user_id) for session in held]
            + [ledger.revenue_code(session.shed_id) for session in held]
        )
    ledger.post_many(
        [
            ledger.Posting(
                f"settle:{session.id}",
                "settle",
                [
                    ledger.Leg(ledger.holds_account(), -session.hold_fen),
                    ledger.Leg(ledger.revenue_account(session.shed_id), session.cost_fen),
                    ledger.Leg(ledger.wallet_account(session.user_id), session.hold_fen - session.cost_fen),
                ],
                memo=f"session {session.id}",
                at=session.ended_at,
            )
            for session in held
        ]
    )
    outbox.enqueue_many(
        [
            outbox.Queued(session.port_id, CMD_STOP, session_id=session.id, argument=session.end_reason)
            for session in ended
            if by_id[session.id].stop_port
        ],
        ended_sessions=[session.id for session in ended],  # a start not sent yet never is
    )
    db.session.execute(
        insert(SessionEvent),
        [
            {
                "session_id": session.id,
                "kind": session.state,
                "at": session.ended_at,
                "detail": (by_id[session.id].detail or session.end_reason)[:255],
            }
            for session in ended
        ],
    )
    # Outbox rows, sent by the worker after this commits.
    notify_events.charges_finished([(session, session.ended_at) for session in ended if session.state == ENDED])
    for session in ended:
        kind = "session.end" if session.state == ENDED else "session.fail"
        log.info("session settled", extra={"event": kind, **_settled_fields(session)})
    return ended


def _per_row(values: dict):
    """One value for every row, or a CASE on the row's id when they differ."""
    distinct = set(values.values())
    return distinct.pop() if len(distinct) == 1 else case(values, value=ChargeSession.id)


def _claim(by_id: dict[int, Ending]) -> list[ChargeSession]:
    """Move the sessions still live to their final state (one conditional UPDATE); those sessions,
    refreshed from what the UPDATE returned. A session ended by someone else first is not touched."""
    if not by_id:
        return []
    return list(
        db.session.execute(
            update(ChargeSession)
            .where(ChargeSession.id.in_(by_id), ChargeSession.state.in_(LIVE_STATES))
            .values(
                state=_per_row({i: e.state for i, e in by_id.items()}),
                end_reason=_per_row({i: e.reason for i, e in by_id.items()}),
                ended_at=_per_row({i: e.at for i, e in by_id.items()}),
            )
            .returning(ChargeSession)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        .scalars()
        .all()
    )


def end_session(
    session: ChargeSession,
    reason: str,
    now: datetime | None = None,
    *,
    detail: str = "",
    stop_port: bool = True,
) -> bool:
    """End a charging (or pending) session for `reason` and settle it, inside the caller's transaction.

    Returns False when the session had already ended (nothing changes). The caller commits (the
    supervisor settles a batch together, see settle).
    """
    ending = Ending(session.id, ENDED, reason, now or clock_now(), detail, stop_port)
    return bool(settle([ending]))


def fail_session(
    session: ChargeSession,
    reason: str = START_FAILED,
    now: datetime | None = None,
    detail: str = "",
) -> bool:
    """A start that never became a charge: release the whole hold, open the relay to be safe.

    Inside the caller's transaction (the caller commits); False when it had ended already."""
    return bool(settle([Ending(session.id, FAILED, reason, now or clock_now(), detail)]))


def _settled_fields(session: ChargeSession) -> dict:
    """What the settlement log line says."""
    return {
        "session_id": session.id,
        "user_id": session.user_id,
        "reason": session.end_reason,
        "cost_fen": session.cost_fen,
        "refund_fen": session.hold_fen - session.cost_fen,
        "ledger_ref": f"settle:{session.id}",
    }


def holds_problems() -> list[str]:
    """The holds account must equal the holds of live sessions."""
    live = db.session.execute(
        select(func.coalesce(func.sum(ChargeSession.hold_fen), 0)).where(ChargeSession.state.in_(LIVE_STATES))
    ).scalar_one()
    held = ledger.holds_account().balance_fen
    if live != held:
        return [f"holds account has {held} fen but live sessions hold {live} fen"]
    return []
