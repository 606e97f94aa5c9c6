"""Ledger accounts, transactions and entries (integer fen)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from chargeshed.extensions import db
from chargeshed.timeutil import now as clock_now

KIND_WALLET = "wallet"
KIND_HOLDS = "holds"
KIND_REVENUE = "revenue"
KIND_EXTERNAL = "external"


class LedgerAccount(db.Model):
    """An account; its cached balance always equals the sum of its entries."""

    __table_args__ = (CheckConstraint("kind NOT IN ('wallet', 'holds') OR balance_fen >= 0", name="not_negative"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"), index=True)
    shed_id: Mapped[int | None] = mapped_column(ForeignKey("shed.id"), index=True)
    balance_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    # ISO code, lower case; balance and entries are in its minor units (fen for CNY, cents for HKD).
    currency: Mapped[str] = mapped_column(String(3), default="cny", server_default="cny")


class LedgerTxn(db.Model):
    """A balanced transaction; `ref` is its business key, so it is booked at most once."""

    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(80), unique=True)
    kind: Mapped[str] = mapped_column(String(24), index=True)
    memo: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=clock_now, index=True)
    # Business time: when the money moved (a session's end, a payment's confirmation). Statements
    # date transactions by it, so everything of one charge session falls on one instant.
    booked_at: Mapped[datetime] = mapped_column(default=clock_now, index=True)

    entries: Mapped[list[LedgerEntry]] = relationship(back_populates="txn", order_by="LedgerEntry.id")


class LedgerEntry(db.Model):
    """One leg of a transaction: a signed amount on one account."""

    __table_args__ = (CheckConstraint("amount_fen <> 0", name="not_zero"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    txn_id: Mapped[int] = mapped_column(ForeignKey("ledger_txn.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_account.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)

    txn: Mapped[LedgerTxn] = relationship(back_populates="entries")
    account: Mapped[LedgerAccount] = relationship()
