"""PortCommand (the outbox), PortEvent and Alert."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

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


ALERT_OFFLINE = "offline"
ALERT_FAULT = "fault"


class Alert(db.Model):
    """A port problem that lasted past its debounce (offline, fault), until cleared and acknowledged."""

    __table_args__ = (Index("ix_alert_open", "cleared_at", "port_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    port_id: Mapped[int] = mapped_column(ForeignKey("port.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(String(80), default="")
    # When the condition began (last heartbeat, first fault reading), was raised and ended.
    started_at: Mapped[datetime]
    raised_at: Mapped[datetime] = mapped_column(index=True)
    cleared_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))

    port: Mapped[Port] = relationship()  # noqa: F821
    acknowledged_by: Mapped[User | None] = relationship()  # noqa: F821

    @property
    def is_open(self) -> bool:
        """True until the condition has cleared."""
        return self.cleared_at is None
