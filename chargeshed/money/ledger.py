"""Double-entry ledger: balanced transactions in integer fen, booked at most once per ref."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from chargeshed.extensions import db
from chargeshed.money.models import (
    KIND_EXTERNAL,
    KIND_HOLDS,
    KIND_REVENUE,
    KIND_WALLET,
    LedgerAccount,
    LedgerEntry,
    LedgerTxn,
)

HOLDS_CODE = "holds"

log = logging.getLogger(__name__)


class LedgerError(Exception):
    """A transaction that must not be booked."""


class InsufficientFunds(LedgerError):
    """The transaction would take a wallet (or holds) below zero."""


class AlreadyBooked(LedgerError):
    """A transaction with this ref exists already."""


@dataclass(frozen=True)
class Leg:
    """One side of a transaction: `amount_fen` added to `account` (negative takes away)."""

    account: LedgerAccount
    amount_fen: int


def get_account(code: str, kind: str, *, owner_id: int | None = None, shed_id: int | None = None):
    """The account with this code, created on first use (race-safe via the unique code)."""
    found = db.session.execute(select(LedgerAccount).where(LedgerAccount.code == code)).scalar_one_or_none()
    if found is not None:
        return found
    try:
        with db.session.begin_nested():
            account = LedgerAccount(code=code, kind=kind, owner_id=owner_id, shed_id=shed_id, balance_fen=0)
            db.session.add(account)
        return account
    except IntegrityError:  # created meanwhile by a concurrent transaction (or a broken reference)
        found = db.session.execute(select(LedgerAccount).where(LedgerAccount.code == code))
        found = found.scalar_one_or_none()
        if found is None:
            raise
        return found


def wallet_account(user_id: int) -> LedgerAccount:
    """A resident's wallet: money the compound owes them."""
    return get_account(wallet_code(user_id), KIND_WALLET, owner_id=user_id)


def holds_account() -> LedgerAccount:
    """Money reserved for live charge sessions."""
    return get_account(HOLDS_CODE, KIND_HOLDS)


def revenue_account(shed_id: int) -> LedgerAccount:
    """A shed's earned charging revenue."""
    return get_account(f"revenue:shed:{shed_id}", KIND_REVENUE, shed_id=shed_id)


def external_account(name: str) -> LedgerAccount:
    """Money outside the compound's books, e.g. the payment provider's clearing account."""
    return get_account(f"external:{name}", KIND_EXTERNAL)


def wallet_code(user_id: int) -> str:
    """The ledger account code of a resident's wallet."""
    return f"wallet:{user_id}"


def wallet_balance(user_id: int) -> int:
    """A resident's wallet balance in fen (0 when the wallet was never used)."""
    value = db.session.execute(
        select(LedgerAccount.balance_fen).where(LedgerAccount.code == wallet_code(user_id))
    ).scalar_one_or_none()
    return value or 0


def find_txn(ref: str) -> LedgerTxn | None:
    """The transaction booked under `ref`, if any."""
    return db.session.execute(select(LedgerTxn).where(LedgerTxn.ref == ref)).scalar_one_or_none()


def post(ref: str, kind: str, legs: Sequence[Leg], memo: str = "") -> LedgerTxn:
    """Book a balanced transaction inside the caller's DB transaction (the caller commits).

    Raises AlreadyBooked when `ref` exists, InsufficientFunds when a wallet or the
    holds account would go below zero; in both cases nothing of it is kept.

    Concurrency: the unique `ref` makes a second booking of the same business event
    fail, and each balance moves by an atomic UPDATE checked by the database
    (ck_ledger_account_not_negative), so parallel postings can neither lose an
    update nor overdraw a wallet. Accounts are locked in id order, so two postings
    touching the same accounts never deadlock.
    """
    legs = [leg for leg in legs if leg.amount_fen != 0]
    if any(not isinstance(leg.amount_fen, int) or isinstance(leg.amount_fen, bool) for leg in legs):
        raise LedgerError("amounts must be integer fen")
    if sum(leg.amount_fen for leg in legs) != 0:
        raise LedgerError(f"unbalanced transaction {ref}")
    if not legs:
        raise LedgerError(f"empty transaction {ref}")
    if find_txn(ref) is not None:
        raise AlreadyBooked(ref)
    balances: dict[int, int] = {}
    try:
        with db.session.begin_nested():
            txn = LedgerTxn(ref=ref, kind=kind, memo=memo[:255])
            db.session.add(txn)
            db.session.flush()
            for leg in sorted(legs, key=lambda leg: leg.account.id):
                balances[leg.account.id] = db.session.execute(
                    update(LedgerAccount)
                    .where(LedgerAccount.id == leg.account.id)
                    .values(balance_fen=LedgerAccount.balance_fen + leg.amount_fen)
                    .returning(LedgerAccount.balance_fen)
                    .execution_options(synchronize_session=False)
                ).scalar_one()
            db.session.add_all(LedgerEntry(txn_id=txn.id, account_id=leg.account.id,
                                           amount_fen=leg.amount_fen) for leg in legs)
            db.session.flush()
    except IntegrityError as exc:
        message = str(exc.orig).lower()
        if "not_negative" in message or "check constraint" in message:
            raise InsufficientFunds(ref) from exc
        if find_txn(ref) is not None or "ledger_txn" in message:
            raise AlreadyBooked(ref) from exc
        raise
    for leg in legs:
        set_committed_value(leg.account, "balance_fen", balances[leg.account.id])
    log.debug("ledger post", extra={"event": "ledger.post", "txn_id": txn.id, "ref": ref, "kind": kind,
                                     "legs": {leg.account.code: leg.amount_fen for leg in legs}})
    return txn


def check_ledger() -> list[str]:
    """Problems found in the books: unbalanced transactions, cached balances that disagree."""
    problems = []
    unbalanced = db.session.execute(
        select(LedgerTxn.ref, func.sum(LedgerEntry.amount_fen))
        .join(LedgerEntry, LedgerEntry.txn_id == LedgerTxn.id)
        .group_by(LedgerTxn.id, LedgerTxn.ref)
        .having(func.sum(LedgerEntry.amount_fen) != 0)
    ).all()
    problems += [f"transaction {ref} is unbalanced by {total} fen" for ref, total in unbalanced]
    sums = (
        select(LedgerEntry.account_id, func.sum(LedgerEntry.amount_fen).label("total"))
        .group_by(LedgerEntry.account_id)
        .subquery()
    )
    rows = db.session.execute(
        select(LedgerAccount.code, LedgerAccount.kind, LedgerAccount.balance_fen, sums.c.total).outerjoin(
            sums, sums.c.account_id == LedgerAccount.id
        )
    ).all()
    for code, kind, cached, total in rows:
        total = total or 0
        if cached != total:
            problems.append(f"account {code}: cached balance {cached} but entries sum to {total}")
        if kind in (KIND_WALLET, KIND_HOLDS) and total < 0:
            problems.append(f"account {code} is negative ({total} fen)")
    return problems
