"""TopUp and WebhookEvent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from chargeshed.extensions import db
from chargeshed.timeutil import now as clock_now

CREATED = "created"
CREDITED = "credited"
EXPIRED = "expired"


class TopUp(db.Model):
    """A wallet top-up through a payment provider; credited to the wallet exactly once."""

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    amount_fen: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3), default="cny")
    provider: Mapped[str] = mapped_column(String(12))
    status: Mapped[str] = mapped_column(String(12), default=CREATED, index=True)
    checkout_ref: Mapped[str | None] = mapped_column(String(255), unique=True)
    payment_ref: Mapped[str | None] = mapped_column(String(255))
    fee_fen: Mapped[int | None]
    # "Top up and start": the port to start on once the money is in.
    start_port_id: Mapped[int | None] = mapped_column(ForeignKey("port.id"))
    started_session_id: Mapped[int | None] = mapped_column(ForeignKey("charge_session.id"))
    created_at: Mapped[datetime] = mapped_column(default=clock_now, index=True)
    credited_at: Mapped[datetime | None]

    user: Mapped["User"] = relationship()  # noqa: F821
    start_port: Mapped["Port | None"] = relationship()  # noqa: F821


class WebhookEvent(db.Model):
    """A provider event we received, kept for audit (duplicates are recorded once)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(80))
    outcome: Mapped[str] = mapped_column(String(80), default="")
    received_at: Mapped[datetime] = mapped_column(default=clock_now)
