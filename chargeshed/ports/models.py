"""PortCommand (the outbox) and PortEvent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from chargeshed.extensions import db
from chargeshed.timeutil import now as clock_now

CMD_START = "start"
CMD_STOP = "stop"
CMD_SET_AVAILABLE = "set_available"

QUEUED = "queued"
DONE = "done"
REJECTED = "rejected"


class PortCommand(db.Model):
    """A command for a port, written in the same transaction as the change that needs it."""

    id: Mapped[int] = mapped_column(primary_key=True)
    port_id: Mapped[int] = mapped_column(ForeignKey("port.id"), index=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("charge_session.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    argument: Mapped[str] = mapped_column(String(32), default="")
    status: Mapped[str] = mapped_column(String(12), default=QUEUED, index=True)
    error: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=clock_now)
    done_at: Mapped[datetime | None]


class PortEvent(db.Model):
    """Something a port did: fault, offline, back online, overload cut-off."""

    id: Mapped[int] = mapped_column(primary_key=True)
    port_id: Mapped[int] = mapped_column(ForeignKey("port.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=clock_now, index=True)
    kind: Mapped[str] = mapped_column(String(24))
    detail: Mapped[str] = mapped_column(String(255), default="")
