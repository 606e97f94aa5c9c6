"""TopUp, WebhookEvent, and the refund side: CashOut, TopUpRefund, SessionRefund."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from chargeshed.extensions import db
from chargeshed.timeutil import now as clock_now

# Top-up states.
CREATED = "created"
CREDITED = "credited"
EXPIRED = "expired"
FAILED = "failed"

# Refund (TopUpRefund) states, as the provider reports them.
REFUND_PENDING = "pending"
REFUND_SUCCEEDED = "succeeded"
REFUND_FAILED = "failed"

# Cash-out states: pending until every part is settled.
CASHOUT_PENDING = "pending"
CASHOUT_COMPLETED = "completed"
CASHOUT_PARTIAL = "partial"  # some parts failed; their money went back to the wallet
CASHOUT_FAILED = "failed"


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
    # The provider's exact fee and what we keep, from its balance transaction (set once known).
    fee_fen: Mapped[int | None]
    net_fen: Mapped[int | None]
    # "Top up and start": the port to start on once the money is in.
    start_port_id: Mapped[int | None] = mapped_column(ForeignKey("port.id"))
    started_session_id: Mapped[int | None] = mapped_column(ForeignKey("charge_session.id"))
    created_at: Mapped[datetime] = mapped_column(default=clock_now, index=True)
    credited_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()  # noqa: F821
    start_port: Mapped[Port | None] = relationship()  # noqa: F821


class WebhookEvent(db.Model):
    """A provider event we received, kept for audit (duplicates are recorded once)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(80))
    outcome: Mapped[str] = mapped_column(String(80), default="")
    received_at: Mapped[datetime] = mapped_column(default=clock_now)


class CashOut(db.Model):
    """A resident withdrawing wallet money: refunded against their recent top-ups."""

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    amount_fen: Mapped[int]
    provider: Mapped[str] = mapped_column(String(12))
    status: Mapped[str] = mapped_column(String(12), default=CASHOUT_PENDING, index=True)
    # The form's one-time key: a double submit finds the first cash-out instead of making a second.
    request_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=clock_now, index=True)
    settled_at: Mapped[datetime | None]

    parts: Mapped[list[TopUpRefund]] = relationship(back_populates="cashout", order_by="TopUpRefund.id")

    @property
    def returned_fen(self) -> int:
        """Money that reached the resident's payment method so far."""
        return sum(p.amount_fen for p in self.parts if p.status == REFUND_SUCCEEDED)

    @property
    def back_in_wallet_fen(self) -> int:
        """Money whose refund failed and went back to the wallet."""
        return sum(p.amount_fen for p in self.parts if p.status == REFUND_FAILED)


class TopUpRefund(db.Model):
    """One provider refund: the part of a cash-out refunded against one top-up."""

    id: Mapped[int] = mapped_column(primary_key=True)
    cashout_id: Mapped[int] = mapped_column(ForeignKey("cash_out.id"), index=True)
    topup_id: Mapped[int] = mapped_column(ForeignKey("top_up.id"), index=True)
    amount_fen: Mapped[int]
    status: Mapped[str] = mapped_column(String(12), default=REFUND_PENDING, index=True)
    provider_ref: Mapped[str | None] = mapped_column(String(255), unique=True)
    failure_reason: Mapped[str] = mapped_column(String(80), default="")
    created_at: Mapped[datetime] = mapped_column(default=clock_now)
    settled_at: Mapped[datetime | None]

    cashout: Mapped[CashOut] = relationship(back_populates="parts")
    topup: Mapped[TopUp] = relationship()


class SessionRefund(db.Model):
    """A goodwill refund of a charge session by staff, with the reason (the audit record)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("charge_session.id"), unique=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    amount_fen: Mapped[int]
    reason: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=clock_now, index=True)

    session: Mapped[ChargeSession] = relationship()  # noqa: F821
    staff: Mapped[User] = relationship()  # noqa: F821
