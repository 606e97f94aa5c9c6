"""A wallet's statement (钱包明细): every entry on the wallet account with the balance after it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from chargeshed.extensions import db
from chargeshed.money.models import LedgerAccount, LedgerEntry, LedgerTxn


@dataclass(frozen=True)
class StatementLine:
    """One movement of a wallet: what it was (txn kind and ref), when, how much, and the balance after it."""

    at: datetime
    kind: str
    ref: str
    amount_fen: int
    balance_fen: int

    @property
    def subject_id(self) -> int | None:
        """The id the ref names last (session, top-up, cash-out, refund, pass), or None."""
        tail = self.ref.rsplit(":", 1)[-1]
        return int(tail) if tail.isdigit() else None


def wallet_statement(user_id: int, *, limit: int = 50, offset: int = 0) -> tuple[list[StatementLine], bool]:
    """The wallet's entries, newest first, with the running balance; and whether older ones exist.

    The balance after each line is the account's balance minus everything booked after it, so a page
    of recent lines needs no walk through the whole history.
    """
    account = db.session.execute(
        select(LedgerAccount).where(LedgerAccount.code == f"wallet:{user_id}")
    ).scalar_one_or_none()
    if account is None:  # never used: nothing to show (and a page view creates no account)
        return [], False
    order = (LedgerEntry.id.desc(),)
    rows = db.session.execute(
        select(LedgerEntry.id, LedgerEntry.amount_fen, LedgerTxn.kind, LedgerTxn.ref, LedgerTxn.created_at)
        .join(LedgerTxn, LedgerTxn.id == LedgerEntry.txn_id)
        .where(LedgerEntry.account_id == account.id)
        .order_by(*order)
        .offset(offset)
        .limit(limit + 1)
    ).all()
    page = rows[:limit]
    if not page:
        return [], False
    newer = db.session.execute(
        select(func.coalesce(func.sum(LedgerEntry.amount_fen), 0)).where(
            LedgerEntry.account_id == account.id, LedgerEntry.id > page[0].id
        )
    ).scalar_one()
    balance = account.balance_fen - int(newer)
    lines = []
    for row in page:
        lines.append(StatementLine(row.created_at, row.kind, row.ref, int(row.amount_fen), balance))
        balance -= int(row.amount_fen)
    return lines, len(rows) > limit
