"""Double-entry ledger: balanced transactions in integer fen, booked at most once per ref."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, insert, select, update
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
from chargeshed.timeutil import now as clock_now

HOLDS_CODE = "holds"
DEFAULT_CURRENCY = "cny"
# db.session.info key: accounts looked up in the open transaction, by code (see get_account).
_ACCOUNTS = "ledger_accounts"

# The constraints whose violation post() turns into a LedgerError (names per the naming convention).
NOT_NEGATIVE = "ck_ledger_account_not_negative"
UNIQUE_REF = "uq_ledger_txn_ref"

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


@dataclass(frozen=True)
class Posting:
    """One balanced transaction to book (see post)."""

    ref: str
    kind: str
    legs: Sequence[Leg]
    memo: str = ""
    at: datetime | None = None


def _remember(account: LedgerAccount) -> LedgerAccount:
    """Keep the account for later lookups while the innermost open transaction (or savepoint) lasts:
    one that is rolled back (or released) forgets it, so an account created inside a savepoint that
    was undone is never handed out."""
    session = db.session()
    scope = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault(_ACCOUNTS, {})[account.code] = (scope, account)
    return account


def _remembered(code: str) -> LedgerAccount | None:
    scope, account = db.session.info.get(_ACCOUNTS, {}).get(code, (None, None))
    return account if scope is not None and scope.is_active else None


def preload_accounts(codes) -> None:
    """Look the existing accounts among `codes` up in one query, for the get_account calls that follow."""
    missing = sorted({code for code in codes if _remembered(code) is None})
    if missing:
        for account in db.session.execute(select(LedgerAccount).where(LedgerAccount.code.in_(missing))).scalars():
            _remember(account)


def get_account(
    code: str, kind: str, *, owner_id: int | None = None, shed_id: int | None = None, currency: str = DEFAULT_CURRENCY
):
    """The account with this code, created on first use (race-safe via the unique code).

    An account holds one currency; its amounts are in that currency's minor units (fen for CNY).
    Looked up once per transaction (preload_accounts looks up many in one query).
    """
    found = _remembered(code)
    if found is not None:
        return found
    found = db.session.execute(select(LedgerAccount).where(LedgerAccount.code == code)).scalar_one_or_none()
    if found is not None:
        return _remember(found)
    try:
        with db.session.begin_nested():
            account = LedgerAccount(
                code=code, kind=kind, owner_id=owner_id, shed_id=shed_id, balance_fen=0, currency=currency.lower()
            )
            db.session.add(account)
        return _remember(account)
    except IntegrityError:  # created meanwhile by a concurrent transaction (or a broken reference)
        found = db.session.execute(select(LedgerAccount).where(LedgerAccount.code == code))
        found = found.scalar_one_or_none()
        if found is None:
            raise
        return _remember(found)


def wallet_account(user_id: int) -> LedgerAccount:
    """A resident's wallet: money the compound owes them."""
    return get_account(wallet_code(user_id), KIND_WALLET, owner_id=user_id)


def holds_account() -> LedgerAccount:
    """Money reserved for live charge sessions."""
    return get_account(HOLDS_CODE, KIND_HOLDS)


def revenue_account(shed_id: int) -> LedgerAccount:
    """A shed's earned charging revenue."""
    return get_account(revenue_code(shed_id), KIND_REVENUE, shed_id=shed_id)


def revenue_code(shed_id: int) -> str:
    """The ledger account code of a shed's revenue."""
    return f"revenue:shed:{shed_id}"


def external_account(name: str, currency: str = DEFAULT_CURRENCY) -> LedgerAccount:
    """Money outside the compound's books, e.g. the payment provider's clearing account.

    Sign convention: money coming in from outside (a top-up) takes it below zero, money going out
    (a refund, a provider's fee) brings it back up, so minus its balance is what the provider holds
    for us. Accounts in another currency than CNY are named external:<name>:<currency>.
    """
    currency = currency.lower()
    code = f"external:{name}" if currency == DEFAULT_CURRENCY else f"external:{name}:{currency}"
    return get_account(code, KIND_EXTERNAL, currency=currency)


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


def post(ref: str, kind: str, legs: Sequence[Leg], memo: str = "", *, at: datetime | None = None) -> int:
    """Book a balanced transaction inside the caller's DB transaction (the caller commits); its id.

    `at` is the business time the money moved (e.g. the instant a charge session ended);
    statements date the transaction by it. It defaults to the app clock's now.
    A transaction balances per currency: the legs of each currency sum to zero.

    Raises AlreadyBooked when `ref` exists, InsufficientFunds when a wallet or the
    holds account would go below zero; in both cases nothing of it is kept. The two are
    told apart by the name of the violated constraint.

    Concurrency: the unique `ref` makes a second booking of the same business event
    fail, and each balance moves by an atomic UPDATE checked by the database
    (ck_ledger_account_not_negative), so parallel postings can neither lose an
    update nor overdraw a wallet. Accounts are locked in id order, so two postings
    touching the same accounts never deadlock.
    """
    return post_many([Posting(ref, kind, legs, memo, at)])[0]


def post_many(postings: Sequence[Posting]) -> list[int]:
    """Book several balanced transactions at once, all or none (see post); their ids, in order.

    A fixed number of statements whatever their number: the transactions, one locked update of
    every account's balance by the sum of its legs, the entries. Raises as post does (the refs of
    all postings in the error) and then keeps nothing of any of them. The not-negative rule is
    checked on each account's balance after all of them: a batch whose postings must each be
    covered on their own (a debit that a later credit in the batch would cover) is booked by post.
    """
    checked = [(posting, _checked(posting)) for posting in postings]
    if not checked:
        return []
    refs = ",".join(posting.ref for posting, _legs in checked)
    moves: dict[int, int] = defaultdict(int)
    accounts = {}
    for _posting, legs in checked:
        for leg in legs:
            moves[leg.account.id] += leg.amount_fen
            accounts[leg.account.id] = leg.account
    now = clock_now()
    try:
        with db.session.begin_nested():
            booked = dict(
                db.session.execute(
                    insert(LedgerTxn).returning(LedgerTxn.ref, LedgerTxn.id),
                    [
                        {
                            "ref": p.ref,
                            "kind": p.kind,
                            "memo": p.memo[:255],
                            "booked_at": p.at or now,
                            "created_at": now,
                        }
                        for p, _legs in checked
                    ],
                ).all()
            )
            ids = [booked[posting.ref] for posting, _legs in checked]
            balances = _move_balances(moves)
            db.session.execute(
                insert(LedgerEntry),
                [
                    {"txn_id": txn_id, "account_id": leg.account.id, "amount_fen": leg.amount_fen}
                    for txn_id, (_posting, legs) in zip(ids, checked, strict=True)
                    for leg in legs
                ],
            )
    except IntegrityError as exc:
        violated = violated_constraint(exc)
        if violated == NOT_NEGATIVE:
            raise InsufficientFunds(refs) from exc
        if violated == UNIQUE_REF:
            raise AlreadyBooked(refs) from exc
        raise
    for account_id, balance in balances.items():
        set_committed_value(accounts[account_id], "balance_fen", balance)
    if log.isEnabledFor(logging.DEBUG):
        for txn_id, (posting, legs) in zip(ids, checked, strict=True):
            log.debug(
                "ledger post",
                extra={
                    "event": "ledger.post",
                    "txn_id": txn_id,
                    "ref": posting.ref,
                    "kind": posting.kind,
                    "legs": {leg.account.code: leg.amount_fen for leg in legs},
                },
            )
    return ids


def _checked(posting: Posting) -> list[Leg]:
    """The posting's non-zero legs; LedgerError unless they are integer fen balancing per currency."""
    legs = [leg for leg in posting.legs if leg.amount_fen != 0]
    if any(not isinstance(leg.amount_fen, int) or isinstance(leg.amount_fen, bool) for leg in legs):
        raise LedgerError("amounts must be integer fen")
    per_currency: dict[str, int] = defaultdict(int)
    for leg in legs:
        per_currency[leg.account.currency or DEFAULT_CURRENCY] += leg.amount_fen
    if any(per_currency.values()):
        raise LedgerError(f"unbalanced transaction {posting.ref}")
    if not legs:
        raise LedgerError(f"empty transaction {posting.ref}")
    return legs


def _move_balances(moves: dict[int, int]) -> dict[int, int]:
    """Add each amount to its account's balance; the new balances by account id.

    On PostgreSQL the rows are locked first, in id order (one statement), so postings touching the
    same accounts never deadlock; the database's CHECK refuses a wallet or holds going below zero.
    """
    ids = sorted(moves)
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(
            select(LedgerAccount.id).where(LedgerAccount.id.in_(ids)).order_by(LedgerAccount.id).with_for_update()
        ).all()
    amount = moves[ids[0]] if len(ids) == 1 else case(moves, value=LedgerAccount.id)
    rows = db.session.execute(
        update(LedgerAccount)
        .where(LedgerAccount.id.in_(ids))
        .values(balance_fen=LedgerAccount.balance_fen + amount)
        .returning(LedgerAccount.id, LedgerAccount.balance_fen)
        .execution_options(synchronize_session=False)
    ).all()
    return dict(rows)


def violated_constraint(exc: IntegrityError) -> str | None:
    """The name of the constraint an IntegrityError violated, from the driver's structured report.

    PostgreSQL (psycopg) names it in the error's diagnostics. SQLite has no diagnostics: a CHECK
    failure carries the constraint's name, a UNIQUE failure the table and columns, which are mapped
    to the unique constraint declared on them.
    """
    diag = getattr(exc.orig, "diag", None)
    if diag is not None:
        return getattr(diag, "constraint_name", None)
    message = str(exc.orig)
    for prefix in ("CHECK constraint failed: ", "UNIQUE constraint failed: "):
        if message.startswith(prefix):
            target = message[len(prefix) :].strip()
            if prefix.startswith("UNIQUE"):
                table, _, columns = target.partition(".")
                return f"uq_{table}_{columns.split(',')[0].strip()}"
            return target if target.startswith("ck_") else f"ck_{target}"
    return None


def _unit(currency: str | None) -> str:
    return "fen" if (currency or DEFAULT_CURRENCY) == DEFAULT_CURRENCY else f"{currency.upper()} minor units"


def check_ledger() -> list[str]:
    """Problems found in the books: unbalanced transactions, cached balances that disagree."""
    problems = []
    unbalanced = db.session.execute(
        select(LedgerTxn.ref, LedgerAccount.currency, func.sum(LedgerEntry.amount_fen))
        .join(LedgerEntry, LedgerEntry.txn_id == LedgerTxn.id)
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .group_by(LedgerTxn.id, LedgerTxn.ref, LedgerAccount.currency)
        .having(func.sum(LedgerEntry.amount_fen) != 0)
    ).all()
    problems += [f"transaction {ref} is unbalanced by {total} {_unit(currency)}" for ref, currency, total in unbalanced]
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
