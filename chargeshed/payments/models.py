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
REFUNDED = "refunded"  # refunded in full (e.g. from the dashboard) before it was credited: never credited
UNPAID_STATES = (EXPIRED, FAILED, REFUNDED)

# Refunds not made by ChargeShed (dashboard, dispute): how each was booked.
EXTERNAL_BEFORE_CREDIT = "before_credit"  # the top-up was not credited yet: it is credited less
EXTERNAL_TAKEN = "taken"  # taken back from the wallet in full
EXTERNAL_SHORTFALL = "shortfall"  # the wallet no longer had it all: the rest is a loss to look at
EXTERNAL_UNMATCHED = "unmatched"  # no top-up of ours: nothing booked, reported
EXTERNAL_FAILED = "failed"  # it failed after it was booked: the money is back, the booking reversed

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
    # A random idempotency key for creating the checkout (database ids are reused after a rollback).
    checkout_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    payment_ref: Mapped[str | None] = mapped_column(String(255))
    # The provider's exact fee and what we keep, from its balance transaction (set once known), in
    # minor units of `fee_currency`: the provider's settlement currency (None: the top-up's currency).
    fee_fen: Mapped[int | None]
    net_fen: Mapped[int | None]
    fee_currency: Mapped[str | None] = mapped_column(String(3))
    # Stripe's rate when it converted the payment: top-up amount x rate = amount in fee_currency.
    exchange_rate: Mapped[str | None] = mapped_column(String(32))
    # Why the checkout could not be created or paid, for the resident's page (e.g. "provider_down").
    problem: Mapped[str] = mapped_column(String(40), default="", server_default="")
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
    # A random idempotency key and when it was made: Stripe forgets keys after about 24 h, so a key
    # older than a few hours is never relied on; the refund is looked up by its metadata instead.
    idempotency_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    key_created_at: Mapped[datetime | None]
    submitted_at: Mapped[datetime | None]  # first request sent (any later one is a resubmission)
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


class ExternalRefund(db.Model):
    """Money returned to a payer outside ChargeShed (a dashboard refund, a lost dispute), booked once.

    Taken back from the resident's wallet as far as it is still there; the rest is a shortfall the
    operator sees (on the refunds page and in `reconcile`). Before the top-up was credited, it is
    simply credited less.
    """

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(12))
    provider_ref: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(12), default="refund")  # refund | dispute
    topup_id: Mapped[int | None] = mapped_column(ForeignKey("top_up.id"), index=True)
    payment_ref: Mapped[str | None] = mapped_column(String(255))
    amount_fen: Mapped[int]
    taken_fen: Mapped[int] = mapped_column(default=0)
    shortfall_fen: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(default=clock_now, index=True)

    topup: Mapped[TopUp | None] = relationship()
