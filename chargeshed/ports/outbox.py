"""The port command outbox: written with the change that needs it, delivered by a gateway.

Each command goes through short transactions of its own, with no device call inside any of them:
`claim` (QUEUED → SENDING, `FOR UPDATE SKIP LOCKED` on PostgreSQL, so two gateways never send one
command) and commit; the device call; then `mark_done`, `mark_rejected` or `mark_unanswered`, each
committed on its own. Commands for one port go out in order (a later one waits while an earlier
one is open); a silent device only delays its own commands: an unanswered command goes back to the
queue with a growing delay, and is failed with a reason when it is too old to matter. An
acknowledged command is never sent again. A start whose session ended before it went out is
superseded when the session ends (by its stop, or by the ending itself) and never sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, insert, or_, select, text, update
from sqlalchemy.orm import aliased

from chargeshed.extensions import db
from chargeshed.ports import targets
from chargeshed.ports.driver import PortOffline, PortRejected
from chargeshed.ports.models import (
    CMD_SET_AVAILABLE,
    CMD_START,
    CMD_STOP,
    DONE,
    FAILED,
    OPEN_STATES,
    QUEUED,
    REJECTED,
    SENDING,
    DeviceLink,
    PortCommand,
    PortTelemetry,
)
from chargeshed.sites.models import Port
from chargeshed.timeutil import now as clock_now

log = logging.getLogger(__name__)

# PostgreSQL NOTIFY channel: a gateway LISTENing here wakes at once when a command is queued.
CHANNEL = "chargeshed_port_commands"
# Delay before the n-th retry of an unanswered command (then the last value, again and again).
BACKOFF_SECONDS = (2, 5, 15, 30, 60)
# A command unanswered for this long is failed. A start is normally superseded long before: its
# session fails after 60 s unconfirmed and queues a stop. Stops keep trying for a day (safety).
GIVE_UP_SECONDS = {CMD_START: 10 * 60, CMD_STOP: 24 * 3600, CMD_SET_AVAILABLE: 24 * 3600}
# A command claimed this long ago and still SENDING belonged to a gateway that died: queue it again.
CLAIM_EXPIRES_SECONDS = 120
SUPERSEDED = "not sent: its session ended first"


@dataclass(frozen=True)
class Command:
    """One command as a gateway adapter receives it.

    kind: "start", "stop" or "set_available". target: the port's parsed hardware target.
    session_ref: our session reference ("S42"), for a device's idTag/order number; "" if none.
    cap_seconds (start): switch off by yourself after this long (device-side cap), None = no cap.
    reason (stop): why we stop (full, user_stop, …). available (set_available): in service or not.
    """

    id: int
    port_id: int
    port_code: str
    kind: str
    target: targets.Target
    session_ref: str = ""
    cap_seconds: int | None = None
    reason: str = ""
    available: bool = True
    attempts: int = 0


@dataclass
class Delivered:
    """What one `deliver` round did."""

    sent: int = 0
    port_ids: set[int] = field(default_factory=set)
    rejected: list[int] = field(default_factory=list)
    unanswered: int = 0


@dataclass(frozen=True)
class Queued:
    """A command to queue (see enqueue)."""

    port_id: int
    kind: str
    session_id: int | None = None
    argument: str = ""
    cap_seconds: int | None = None


def enqueue(
    port_id: int, kind: str, *, session_id: int | None = None, argument: str = "", cap_seconds: int | None = None
) -> None:
    """Queue a command in the caller's transaction (on PostgreSQL, gateways are woken on commit).

    A stop for a session supersedes that session's start if it has not gone out yet.
    """
    enqueue_many([Queued(port_id, kind, session_id, argument, cap_seconds)])


def enqueue_many(commands: list[Queued], *, ended_sessions: Iterable[int] = ()) -> None:
    """Queue commands in the caller's transaction, in a fixed number of statements (see enqueue).

    `ended_sessions`: sessions that ended, with or without a stop queued here (a port that reported
    the end itself needs none); a start of theirs not sent yet is superseded and never sent.
    """
    now = clock_now()
    finished = {c.session_id for c in commands if c.kind == CMD_STOP and c.session_id is not None}
    finished.update(ended_sessions)
    if finished:
        db.session.execute(
            update(PortCommand)
            .where(
                PortCommand.session_id.in_(sorted(finished)),
                PortCommand.kind == CMD_START,
                PortCommand.status == QUEUED,
            )
            .values(status=DONE, error=SUPERSEDED, done_at=now)
            .execution_options(synchronize_session=False)
        )
    if not commands:
        return
    db.session.execute(
        insert(PortCommand),
        [
            {
                "port_id": c.port_id,
                "kind": c.kind,
                "session_id": c.session_id,
                "argument": c.argument,
                "cap_seconds": c.cap_seconds,
                "status": QUEUED,
                "attempts": 0,
                "error": "",
                "created_at": now,
            }
            for c in commands
        ],
    )
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


def _scheme_filter(schemes: tuple[str, ...]):
    clauses = [Port.hardware_target == targets.SIM] if targets.SIM in schemes else []
    clauses += [Port.hardware_target.like(f"{scheme}:%") for scheme in schemes if scheme != targets.SIM]
    return or_(*clauses) if clauses else Port.id.is_(None)


def claim(
    now: datetime,
    *,
    gateway_id: str,
    schemes: tuple[str, ...],
    routed: tuple[str, ...] = (),
    limit: int = 200,
    own_claims_expire: float | None = None,
    requeue: bool = True,
) -> list[Command]:
    """Take due commands for ports on `schemes` (QUEUED → SENDING) and commit; the caller sends them.

    Schemes in `routed` (e.g. OCPP, where only the process holding the station's websocket can reach
    it) are claimed only for devices this gateway holds (DeviceLink.gateway_id). At most one open
    command per port: later ones wait for the earlier to be answered. With `requeue`, first queues
    again the commands of gateways that died mid-send (after CLAIM_EXPIRES_SECONDS; this gateway's
    own earlier claims after `own_claims_expire` seconds: a restarted in-process simulator takes its
    commands back at once); a gateway claiming many times a second does that now and then only.

    One UPDATE … RETURNING (PostgreSQL: `FOR UPDATE SKIP LOCKED` in its subquery, so two gateways
    never take one command). On PostgreSQL the claim's commit does not wait for the disk
    (synchronous_commit off for this transaction): a claim is a lease, and one lost in a database
    crash leaves its command queued, to be sent again, as when a gateway dies mid-send; a device's
    acknowledgement (`mark_done`) is committed durably.
    """
    if requeue:
        _requeue_expired(now, gateway_id, own_claims_expire)
    earlier = aliased(PortCommand)
    blocked = exists().where(
        earlier.port_id == PortCommand.port_id, earlier.id < PortCommand.id, earlier.status.in_(OPEN_STATES)
    )
    anywhere = tuple(s for s in schemes if s not in routed)
    reach = [_scheme_filter(anywhere)]
    if routed:
        held = exists().where(
            DeviceLink.device == PortTelemetry.device, DeviceLink.gateway_id == gateway_id, DeviceLink.online.is_(True)
        )
        reach.append(and_(_scheme_filter(routed), PortTelemetry.target == Port.hardware_target, held))
    due = (
        select(PortCommand.id)
        .join(Port, Port.id == PortCommand.port_id)
        .outerjoin(PortTelemetry, PortTelemetry.port_id == PortCommand.port_id)
        .where(
            PortCommand.status == QUEUED,
            or_(PortCommand.next_attempt_at.is_(None), PortCommand.next_attempt_at <= now),
            ~blocked,
            or_(*reach),
        )
        .order_by(PortCommand.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=PortCommand)
    )
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SET LOCAL synchronous_commit = off"))
    rows = db.session.execute(
        update(PortCommand)
        .where(PortCommand.id.in_(due.scalar_subquery()), PortCommand.status == QUEUED)
        .values(
            status=SENDING,
            claimed_by=gateway_id,
            claimed_at=now,
            target=select(Port.hardware_target).where(Port.id == PortCommand.port_id).scalar_subquery(),
        )
        .returning(
            PortCommand.id,
            PortCommand.port_id,
            select(Port.code).where(Port.id == PortCommand.port_id).scalar_subquery(),
            PortCommand.kind,
            PortCommand.target,
            PortCommand.session_id,
            PortCommand.cap_seconds,
            PortCommand.argument,
            PortCommand.attempts,
        )
        .execution_options(synchronize_session=False)
    ).all()
    db.session.commit()
    return [
        Command(
            id=command_id,
            port_id=port_id,
            port_code=code,
            kind=kind,
            target=targets.parse(target or targets.SIM),
            session_ref=f"S{session_id}" if session_id else "",
            cap_seconds=cap,
            reason=argument if kind == CMD_STOP else "",
            available=argument != "off",
            attempts=attempts,
        )
        for command_id, port_id, code, kind, target, session_id, cap, argument, attempts in sorted(rows)
    ]


def _requeue_expired(now: datetime, gateway_id: str, own_expire: float | None) -> None:
    """Commands left SENDING by a gateway that died: queue them again (their device never answered us)."""
    expired = PortCommand.claimed_at <= now - timedelta(seconds=CLAIM_EXPIRES_SECONDS)
    if own_expire is not None:
        expired = or_(
            expired,
            and_(PortCommand.claimed_by == gateway_id, PortCommand.claimed_at <= now - timedelta(seconds=own_expire)),
        )
    db.session.execute(
        update(PortCommand)
        .where(PortCommand.status == SENDING, expired)
        .values(status=QUEUED, next_attempt_at=now, error="gateway lost while sending")
        .execution_options(synchronize_session=False)
    )


def release_claims(gateway_id: str, now: datetime) -> int:
    """Queue again every command `gateway_id` claimed and never marked (it restarted). Commits.

    For a gateway id that outlives its process (the worker's in-process simulator); devices must
    take a repeated command of the same session as a no-op.
    """
    released = db.session.execute(
        update(PortCommand)
        .where(PortCommand.status == SENDING, PortCommand.claimed_by == gateway_id)
        .values(status=QUEUED, next_attempt_at=now, error="sender restarted while sending")
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return released


def _finish(command_id: int, values: dict) -> bool:
    done = db.session.execute(
        update(PortCommand)
        .where(PortCommand.id == command_id, PortCommand.status.in_(OPEN_STATES))
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return bool(done)


def mark_done(command_id: int, now: datetime) -> bool:
    """The device acknowledged the command: it is never sent again. Commits."""
    return _finish(command_id, {"status": DONE, "done_at": now, "error": ""})


def mark_rejected(command_id: int, reason: str, now: datetime) -> bool:
    """The device refused the command (faulted, unknown connector…). Commits."""
    return _finish(command_id, {"status": REJECTED, "done_at": now, "error": (reason or "rejected")[:255]})


def mark_unanswered(command_id: int, reason: str, now: datetime) -> str:
    """No answer (offline, timeout): retry later with backoff, or fail when too old. Commits.

    Returns the command's new status.
    """
    command = db.session.get(PortCommand, command_id)
    if command is None or command.status not in OPEN_STATES:
        db.session.rollback()
        return command.status if command else FAILED
    command.attempts = (command.attempts or 0) + 1
    age = (now - command.created_at).total_seconds()
    limit = GIVE_UP_SECONDS.get(command.kind, 3600)
    if age >= limit:
        command.status, command.done_at = FAILED, now
        command.error = f"not acknowledged in {limit} s: {reason}"[:255]
    else:
        delay = BACKOFF_SECONDS[min(command.attempts, len(BACKOFF_SECONDS)) - 1]
        command.status, command.next_attempt_at = QUEUED, now + timedelta(seconds=delay)
        command.error = (reason or "no answer")[:255]
        command.claimed_by = None
    status = command.status
    db.session.commit()
    return status


def deliver(
    send: Callable[[Command], None],
    now: datetime,
    *,
    gateway_id: str,
    schemes: tuple[str, ...],
    rounds: int = 5,
    own_claims_expire: float | None = None,
) -> Delivered:
    """Synchronous delivery for an in-process device (the simulator): claim, send, mark, repeat.

    `send` raises PortRejected (refused) or PortOffline/TimeoutError (no answer). Several rounds,
    so a stop queued behind a start on the same port goes out in the same call.
    """
    result = Delivered()
    for _ in range(rounds):
        commands = claim(now, gateway_id=gateway_id, schemes=schemes, own_claims_expire=own_claims_expire)
        if not commands:
            break
        for command in commands:
            try:
                send(command)
            except PortRejected as exc:
                mark_rejected(command.id, str(exc), now)
                result.rejected.append(command.id)
            except (PortOffline, TimeoutError) as exc:
                mark_unanswered(command.id, f"{type(exc).__name__}: {exc}", now)
                result.unanswered += 1
                continue
            else:
                mark_done(command.id, now)
            result.sent += 1
            result.port_ids.add(command.port_id)
    return result


def open_command_ports(port_ids: list[int] | None = None) -> set[int]:
    """Ports with a command not yet answered (queued or on its way)."""
    query = select(PortCommand.port_id).where(PortCommand.status.in_(OPEN_STATES)).distinct()
    if port_ids is not None:
        query = query.where(PortCommand.port_id.in_(port_ids))
    return set(db.session.execute(query).scalars())
