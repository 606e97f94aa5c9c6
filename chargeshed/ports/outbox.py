"""The port command outbox: written with the change that needs it, executed by the worker."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from chargeshed.charging.models import PENDING, ChargeSession
from chargeshed.extensions import db
from chargeshed.ports.driver import PortDriver, PortOffline, PortRejected
from chargeshed.ports.models import CMD_SET_AVAILABLE, CMD_START, CMD_STOP, DONE, QUEUED, REJECTED, PortCommand
from chargeshed.sites.models import Port


def enqueue(port_id: int, kind: str, *, session_id: int | None = None, argument: str = "") -> PortCommand:
    """Queue a command in the caller's transaction."""
    command = PortCommand(port_id=port_id, kind=kind, session_id=session_id, argument=argument)
    db.session.add(command)
    return command


def dispatch(driver: PortDriver, now: datetime) -> list[PortCommand]:
    """Execute queued commands in order; offline ports keep theirs queued for the next tick.

    Returns the rejected commands (after commit) for the caller to act on. Rows are claimed with
    SKIP LOCKED where the database supports it, so two workers never run one command.
    """
    query = (
        select(PortCommand, Port.code, ChargeSession.state)
        .join(Port, Port.id == PortCommand.port_id)
        .outerjoin(ChargeSession, ChargeSession.id == PortCommand.session_id)
        .where(PortCommand.status == QUEUED)
        .order_by(PortCommand.id)
        .with_for_update(skip_locked=True, of=PortCommand)
    )
    rejected = []
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
            rejected.append(command)
        command.done_at = now
    db.session.commit()
    return rejected
