"""The port command outbox: written with the change that needs it, executed by the worker."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, text

from chargeshed.charging.models import PENDING, ChargeSession
from chargeshed.extensions import db
from chargeshed.ports.driver import PortDriver, PortOffline, PortRejected
from chargeshed.ports.models import (
    CMD_SET_AVAILABLE,
    CMD_START,
    CMD_STOP,
    DONE,
    QUEUED,
    REJECTED,
    PortCommand,
)
from chargeshed.sites.models import Port
from chargeshed.timeutil import now as clock_now

# PostgreSQL NOTIFY channel: a worker LISTENing here wakes at once when a command is queued.
CHANNEL = "chargeshed_port_commands"


@dataclass
class Dispatched:
    """What one dispatch did: commands sent, the ports they went to, and the rejected ones."""

    sent: int = 0
    port_ids: set[int] = field(default_factory=set)
    rejected: list[PortCommand] = field(default_factory=list)


def enqueue(port_id: int, kind: str, *, session_id: int | None = None, argument: str = "") -> PortCommand:
    """Queue a command in the caller's transaction (on PostgreSQL, the worker is woken on commit)."""
    command = PortCommand(port_id=port_id, kind=kind, session_id=session_id, argument=argument)
    db.session.add(command)
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})
    return command


def dispatch(driver: PortDriver, now: datetime) -> Dispatched:
    """Execute queued commands in order; offline ports keep theirs queued for the next round.

    Rows are claimed with SKIP LOCKED where the database supports it, so two workers never run
    one command. Commits; the rejected commands are returned for the caller to act on. Each
    command's done_at is the moment it was executed.
    """
    query = (
        select(PortCommand, Port.code, ChargeSession.state)
        .join(Port, Port.id == PortCommand.port_id)
        .outerjoin(ChargeSession, ChargeSession.id == PortCommand.session_id)
        .where(PortCommand.status == QUEUED)
        .order_by(PortCommand.id)
        .with_for_update(skip_locked=True, of=PortCommand)
    )
    result = Dispatched()
    offline_ports: set[str] = set()
    for command, code, session_state in db.session.execute(query).all():
        if code in offline_ports:
            continue
        try:
            if command.kind == CMD_START and session_state != PENDING:
                pass  # the session ended or failed before its start went out: never switch on
            elif command.kind == CMD_START:
                driver.start(code, f"S{command.session_id}")
            elif command.kind == CMD_STOP:
                driver.stop(code, command.argument)
            elif command.kind == CMD_SET_AVAILABLE:
                driver.set_available(code, command.argument == "on")
            command.status = DONE
        except PortOffline:
            offline_ports.add(code)
            continue
        except PortRejected as exc:
            command.status = REJECTED
            command.error = str(exc)[:255]
            result.rejected.append(command)
        command.done_at = clock_now()
        result.sent += 1
        result.port_ids.add(command.port_id)
    db.session.commit()
    return result
