"""Money going back: wallet cash-outs refunded to the resident's payment methods, and
staff goodwill refunds of charge sessions.

Cash-out: the wallet money moves to refunds:pending at once; each provider refund
(one per top-up, most recent top-ups first) then either completes (pending ->
external:<provider>) or fails (pending -> wallet). Every step is booked under its
own ledger ref and guarded by a conditional status update, so webhook duplicates,
reordering and the reconcile job never book anything twice.

No double refund: each refund carries a random idempotency key stored on its row and its
own id in the provider's metadata. Before a refund is ever sent again, it is looked up at the
provider by that metadata; a key older than KEY_MAX_AGE is never relied on (Stripe forgets
keys after 24 h).

Refunds not made here (dashboard, lost dispute) are booked too: taken back from the
resident's wallet where the money still is, otherwise shown as a shortfall.

Transactions: the booking functions work inside the caller's transaction (savepoints, never
commit or rollback). `request_cashout` and `submit_refund` call the provider: they are units of
work of their own, to be called with no transaction open, and commit before and after the call.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from chargeshed.charging.models import ENDED, ChargeSession
from chargeshed.config import REFUND_WINDOW_DAYS
from chargeshed.extensions import db
from chargeshed.money import ledger
from chargeshed.money.models import LedgerAccount
from chargeshed.payments import books
from chargeshed.payments.models import (
    CASHOUT_COMPLETED,
    CASHOUT_FAILED,
    CASHOUT_PARTIAL,
    CASHOUT_PENDING,
    CREDITED,
    EXTERNAL_BEFORE_CREDIT,
    EXTERNAL_FAILED,
    EXTERNAL_SHORTFALL,
    EXTERNAL_TAKEN,
    EXTERNAL_UNMATCHED,
    REFUND_FAILED,
    REFUND_PENDING,
    REFUND_SUCCEEDED,
    REFUNDED,
    CashOut,
    ExternalRefund,
    SessionRefund,
    TopUp,
    TopUpRefund,
)
from chargeshed.payments.providers import ProviderRefund, RefundRejected
from chargeshed.timeutil import now as clock_now

log = logging.getLogger(__name__)

# A dispute won after its money was withdrawn: Stripe put the money back.
DISPUTE_REINSTATED = "reinstated"
# A refund that returned nothing after all.
FAILED_STATES = ("failed", "canceled", DISPUTE_REINSTATED)
# Stripe keeps idempotency keys for about 24 h: never rely on one older than this.
KEY_MAX_AGE = timedelta(hours=4)


def new_refund_key() -> str:
    """A random idempotency key (database ids are reused after a rollback: never build keys on them)."""
    return f"chargeshed-refund-{secrets.token_hex(16)}"


def require_no_transaction() -> None:
    """A unit of work that calls the network must not be entered with unsaved changes pending."""
    if db.session.new or db.session.dirty or db.session.deleted:
        raise RuntimeError("unsaved changes before a payment provider call: commit them at the boundary first")


class CashOutRefused(Exception):
    """A cash-out that cannot be made; `code` says why and `limit_fen` how much could be withdrawn."""

    def __init__(self, code: str, limit_fen: int = 0):
        super().__init__(code)
        self.code = code
        self.limit_fen = limit_fen


class SessionRefundRefused(Exception):
    """A goodwill refund that cannot be made; `code` says why."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class Refundable:
    """A top-up that can still be refunded, and how much of it."""

    topup: TopUp
    rest_fen: int


# ---------------------------------------------------------------- cash-out


def refundable_topups(
    user_id: int, provider: str, *, now: datetime | None = None, window_days: int = REFUND_WINDOW_DAYS
) -> list[Refundable]:
    """The resident's top-ups through `provider` that can still be refunded, most recent first."""
    now = now or clock_now()
    taken = (
        select(TopUpRefund.topup_id, func.sum(TopUpRefund.amount_fen).label("fen"))
        .where(TopUpRefund.status != REFUND_FAILED)
        .group_by(TopUpRefund.topup_id)
        .subquery()
    )
    query = (
        select(TopUp, func.coalesce(taken.c.fen, 0))
        .outerjoin(taken, taken.c.topup_id == TopUp.id)
        .where(
            TopUp.user_id == user_id,
            TopUp.provider == provider,
            TopUp.status == CREDITED,
            TopUp.credited_at >= now - timedelta(days=window_days),
        )
        .order_by(TopUp.credited_at.desc(), TopUp.id.desc())
    )
    if provider != "demo":
        query = query.where(TopUp.payment_ref.is_not(None))
    return [Refundable(t, t.amount_fen - fen) for t, fen in db.session.execute(query) if t.amount_fen > fen]


def withdrawable_fen(
    user_id: int, provider: str, *, now: datetime | None = None, window_days: int = REFUND_WINDOW_DAYS
) -> int:
    """How much the resident can cash out now: their balance, up to what their top-ups can return."""
    found = refundable_topups(user_id, provider, now=now, window_days=window_days)
    return min(ledger.wallet_balance(user_id), sum(r.rest_fen for r in found))


def request_cashout(
    user_id: int,
    amount_fen: int,
    provider,
    *,
    now: datetime | None = None,
    window_days: int = REFUND_WINDOW_DAYS,
    request_key: str | None = None,
) -> CashOut:
    """Withdraw `amount_fen` from the wallet, refunded against the most recent top-ups.

    A unit of work of its own (call it with no transaction open): books the cash-out and
    commits, then asks the provider for one refund per top-up, committing after each.
    Raises CashOutRefused (nothing changed) when the amount is not positive, above the
    balance, or above what can be refunded. A repeated `request_key` returns the first cash-out.
    """
    require_no_transaction()
    cashout = book_cashout(
        user_id, amount_fen, provider.name, now=now, window_days=window_days, request_key=request_key
    )
    db.session.commit()
    for part in list(cashout.parts):
        submit_refund(part, provider, now=now)
    db.session.refresh(cashout)
    return cashout


def book_cashout(
    user_id: int,
    amount_fen: int,
    provider_name: str,
    *,
    now: datetime | None = None,
    window_days: int = REFUND_WINDOW_DAYS,
    request_key: str | None = None,
) -> CashOut:
    """Book wallet -> refunds:pending and one pending refund per top-up, in the caller's transaction.

    Raises CashOutRefused with nothing of it written (its own savepoint is undone).
    """
    now = now or clock_now()
    if not isinstance(amount_fen, int) or amount_fen <= 0:
        raise CashOutRefused("amount")
    # Keys are the user's own: another user sending the same key can neither see nor block this one.
    request_key = f"{user_id}:{request_key}"[:64] if request_key else None
    if request_key and (earlier := _cashout_by_key(user_id, request_key)) is not None:
        return earlier
    # One cash-out at a time per wallet (a row lock where the database has them).
    wallet = ledger.wallet_account(user_id)
    db.session.execute(select(LedgerAccount.id).where(LedgerAccount.id == wallet.id).with_for_update())
    balance = ledger.wallet_balance(user_id)
    refundable = refundable_topups(user_id, provider_name, now=now, window_days=window_days)
    possible = min(balance, sum(r.rest_fen for r in refundable))
    if amount_fen > possible:
        raise CashOutRefused("over_balance" if amount_fen > balance else "over_refundable", possible)

    cashout = CashOut(
        user_id=user_id, amount_fen=amount_fen, provider=provider_name, created_at=now, request_key=request_key or None
    )
    try:
        with db.session.begin_nested():
            db.session.add(cashout)
            db.session.flush()
    except IntegrityError:  # the same form submitted twice at once
        earlier = _cashout_by_key(user_id, request_key)
        if earlier is None:
            raise
        return earlier
    try:
        with db.session.begin_nested():
            left = amount_fen
            for item in refundable:
                if left == 0:
                    break
                part = min(left, item.rest_fen)
                db.session.add(
                    TopUpRefund(
                        cashout_id=cashout.id,
                        topup_id=item.topup.id,
                        amount_fen=part,
                        created_at=now,
                        idempotency_key=new_refund_key(),
                        key_created_at=now,
                    )
                )
                left -= part
            db.session.flush()
            ledger.post(
                f"cashout:{cashout.id}",
                books.TXN_CASHOUT,
                [ledger.Leg(wallet, -amount_fen), ledger.Leg(books.pending_refunds_account(), amount_fen)],
                memo=f"cash-out {cashout.id} of user {user_id}",
                at=now,
            )
    except ledger.InsufficientFunds:
        with db.session.begin_nested():
            db.session.delete(cashout)
        raise CashOutRefused("over_balance", ledger.wallet_balance(user_id)) from None
    log.info("cash-out %s: user %s withdraws %s fen in %s refunds", cashout.id, user_id, amount_fen, len(cashout.parts))
    return cashout


def _cashout_by_key(user_id: int, request_key: str | None) -> CashOut | None:
    found = db.session.execute(select(CashOut).where(CashOut.request_key == request_key)).scalar_one_or_none()
    return found if found is not None and found.user_id == user_id else None


def refund_key(part: TopUpRefund) -> str:
    """The idempotency key of a refund: random, stored on the row, renewed when it gets old."""
    return part.idempotency_key or f"chargeshed-refund-{part.id}-{part.topup.payment_ref or part.topup.checkout_ref}"


def submit_refund(part: TopUpRefund, provider, *, now: datetime | None = None) -> str:
    """Ask the provider to refund one part, never twice. Returns what happened.

    A unit of work of its own: call it with no transaction open. A part sent before (whose
    answer may have been lost) is first looked up at the provider by its metadata; only when
    the provider has no such refund is it sent again, with a fresh key if the old one is older
    than KEY_MAX_AGE.
    """
    now = now or clock_now()
    require_no_transaction()
    if part.status != REFUND_PENDING:
        return "settled"
    if part.provider_ref:
        return "submitted"
    if part.submitted_at is not None and hasattr(provider, "find_refund"):
        payment_ref = part.topup.payment_ref
        db.session.commit()  # no transaction stays open over the network call
        try:
            found = provider.find_refund(payment_ref, part.id)
        except Exception:
            log.exception("refund %s could not be looked up; will retry", part.id)
            return "retry"
        if found is not None:
            outcome = apply_provider_refund(found, now=now)
            db.session.commit()
            log.warning(
                "refund %s was made at %s already (%s): linked, not sent again", part.id, provider.name, found.ref
            )
            return "found" if outcome in ("refund_pending", "already_settled") else outcome
        if part.key_created_at is None or now - part.key_created_at > KEY_MAX_AGE:
            part.idempotency_key, part.key_created_at = new_refund_key(), now
    part.submitted_at = part.submitted_at or now
    metadata = {"refund_id": str(part.id), "cashout_id": str(part.cashout_id), "topup_id": str(part.topup_id)}
    topup, amount, key = part.topup, part.amount_fen, refund_key(part)
    db.session.commit()
    try:
        result = provider.refund(topup, amount, key=key, metadata=metadata)
    except RefundRejected as rejected:
        log.warning("refund %s refused by %s: %s", part.id, provider.name, rejected.code)
        outcome = settle_refund(part.id, REFUND_FAILED, failure_reason=rejected.code, now=now)
        db.session.commit()
        return "rejected" if outcome != "already_settled" else outcome
    except Exception:  # network or provider trouble: stays pending, the reconcile job looks it up
        log.exception("refund %s could not be submitted; will retry", part.id)
        return "retry"
    part = db.session.get(TopUpRefund, part.id)
    if part.provider_ref != result.ref:
        part.provider_ref = result.ref
    outcome = apply_provider_refund(result, now=now) if provider.settles_refunds_at_once else "submitted"
    db.session.commit()
    return outcome


def apply_provider_refund(refund: ProviderRefund, *, now: datetime | None = None) -> str:
    """Bring our refund in line with the provider's view of it (webhook or reconcile).

    Inside the caller's transaction. "unknown_refund" when it is not one of ours (then it
    was made outside ChargeShed: see book_external_refund).
    """
    part = db.session.execute(select(TopUpRefund).where(TopUpRefund.provider_ref == refund.ref)).scalar_one_or_none()
    if part is None and refund.refund_id is not None:
        part = db.session.get(TopUpRefund, refund.refund_id)
        if part is not None and (
            part.provider_ref not in (None, refund.ref)
            or (refund.payment_ref and part.topup.payment_ref != refund.payment_ref)
        ):
            part = None
        if part is not None:
            part.provider_ref = refund.ref
            db.session.flush()
    if part is None:
        return "unknown_refund"
    if refund.status == REFUND_SUCCEEDED:
        return settle_refund(part.id, REFUND_SUCCEEDED, now=now)
    if refund.status in FAILED_STATES:
        return settle_refund(part.id, REFUND_FAILED, failure_reason=refund.failure_reason, now=now)
    return "refund_pending" if part.status == REFUND_PENDING else "already_settled"


def settle_refund(part_id: int, status: str, *, failure_reason: str = "", now: datetime | None = None) -> str:
    """Move one refund to succeeded or failed and book it, exactly once (in the caller's transaction).

    pending -> succeeded: refunds:pending -> external:<provider>.
    pending -> failed:    refunds:pending -> wallet (the resident keeps the money).
    succeeded -> failed:  a refund that failed after succeeding: external -> wallet.
    """
    now = now or clock_now()
    part = db.session.get(TopUpRefund, part_id)
    topup = part.topup
    external = ledger.external_account(topup.provider)
    pending = books.pending_refunds_account()
    wallet = ledger.wallet_account(topup.user_id)
    if status == REFUND_SUCCEEDED:
        sources = [(REFUND_PENDING, pending)]
        ref, kind, target = f"refund:{part.id}", books.TXN_REFUND, external
    else:
        sources = [(REFUND_PENDING, pending), (REFUND_SUCCEEDED, external)]
        ref, kind, target = f"refund_failed:{part.id}", books.TXN_REFUND_FAILED, wallet
    for previous, source in sources:
        try:
            with db.session.begin_nested():
                claimed = db.session.execute(
                    update(TopUpRefund)
                    .where(TopUpRefund.id == part.id, TopUpRefund.status == previous)
                    .values(status=status, settled_at=now, failure_reason=failure_reason[:80])
                ).rowcount
                if not claimed:
                    continue
                legs = [ledger.Leg(source, -part.amount_fen), ledger.Leg(target, part.amount_fen)]
                ledger.post(ref, kind, legs, memo=f"refund {part.id} of cash-out {part.cashout_id}: {status}", at=now)
                _update_cashout(part.cashout_id, now)
        except ledger.AlreadyBooked:
            return "already_settled"
        db.session.refresh(part)
        log.info("refund %s %s -> %s", part.id, previous, status)
        return f"refund_{status}"
    return "already_settled"


def _update_cashout(cashout_id: int, now: datetime) -> None:
    cashout = db.session.execute(
        select(CashOut).where(CashOut.id == cashout_id).with_for_update().execution_options(populate_existing=True)
    ).scalar_one()
    states = db.session.execute(select(TopUpRefund.status).where(TopUpRefund.cashout_id == cashout_id)).scalars().all()
    if REFUND_PENDING in states:
        status, settled_at = CASHOUT_PENDING, None
    elif all(s == REFUND_SUCCEEDED for s in states):
        status, settled_at = CASHOUT_COMPLETED, now
    elif all(s == REFUND_FAILED for s in states):
        status, settled_at = CASHOUT_FAILED, now
    else:
        status, settled_at = CASHOUT_PARTIAL, now
    cashout.status = status
    cashout.settled_at = cashout.settled_at or settled_at


def pending_refunds_problems() -> list[str]:
    """refunds:pending must hold exactly the refunds still on their way (like holds for live charges)."""
    on_the_way = db.session.execute(
        select(func.coalesce(func.sum(TopUpRefund.amount_fen), 0)).where(TopUpRefund.status == REFUND_PENDING)
    ).scalar_one()
    held = (
        db.session.execute(
            select(LedgerAccount.balance_fen).where(LedgerAccount.code == books.PENDING_REFUNDS_CODE)
        ).scalar()
        or 0
    )
    if held != on_the_way:
        return [f"{books.PENDING_REFUNDS_CODE} has {held} fen but pending refunds add up to {on_the_way} fen"]
    return []


def pending_refunds() -> list[TopUpRefund]:
    """Refunds still waiting for the provider, oldest first."""
    return list(
        db.session.execute(
            select(TopUpRefund).where(TopUpRefund.status == REFUND_PENDING).order_by(TopUpRefund.id)
        ).scalars()
    )


# ---------------------------------------------------------------- goodwill refunds


def refund_session(
    staff_id: int, session: ChargeSession, amount_fen: int, reason: str, *, now: datetime | None = None
) -> SessionRefund:
    """Give a resident back (part of) what a charge cost, with a reason; once per session.

    Books revenue:shed:<id> -> wallet:<user> under "session_refund:<session id>" and
    keeps who did it and why. Raises SessionRefundRefused (nothing changed) for a
    session that has not ended, an amount not in 1..cost, a missing reason, or a
    session refunded before. The caller checks the staff member's role and tenant.
    """
    now = now or clock_now()
    reason = " ".join((reason or "").split())
    if session.state != ENDED or session.cost_fen <= 0:
        raise SessionRefundRefused("nothing_to_refund")
    if not isinstance(amount_fen, int) or not 0 < amount_fen <= session.cost_fen:
        raise SessionRefundRefused("amount")
    if len(reason) < 3:
        raise SessionRefundRefused("reason")
    ref = f"session_refund:{session.id}"
    if ledger.find_txn(ref) is not None:
        raise SessionRefundRefused("already_refunded")
    row = SessionRefund(
        session_id=session.id, staff_id=staff_id, amount_fen=amount_fen, reason=reason[:255], created_at=now
    )
    try:
        with db.session.begin_nested():
            db.session.add(row)
            db.session.flush()
            ledger.post(
                ref,
                books.TXN_SESSION_REFUND,
                [
                    ledger.Leg(ledger.revenue_account(session.shed_id), -amount_fen),
                    ledger.Leg(ledger.wallet_account(session.user_id), amount_fen),
                ],
                memo=f"goodwill refund of session {session.id} by staff {staff_id}: {reason}",
                at=now,
            )
    except (IntegrityError, ledger.AlreadyBooked):
        raise SessionRefundRefused("already_refunded") from None
    log.info("session %s refunded %s fen by staff %s: %s", session.id, amount_fen, staff_id, reason)
    return row


# ---------------------------------------------------------------- refunds made outside ChargeShed


def external_refund_known(ref: str) -> bool:
    """True when this provider refund (or dispute) is booked already, as ours or as an outside one."""
    ours = db.session.execute(select(TopUpRefund.id).where(TopUpRefund.provider_ref == ref)).first()
    return (
        ours is not None
        or db.session.execute(select(ExternalRefund.id).where(ExternalRefund.provider_ref == ref)).first() is not None
    )


def book_external_refund(
    refund: ProviderRefund, topup_id: int | None, provider_name: str, *, now: datetime | None = None
) -> ExternalRefund | None:
    """Book money the provider returned to a payer without us (dashboard refund, lost dispute), once.

    In the caller's transaction. The top-up row is locked first, so this and a concurrent
    credit of the same top-up are serialised: before the credit, the top-up is credited less;
    after it, the money is taken back from the wallet as far as it is still there and the rest
    is booked as the operator's loss (a shortfall, shown on the refunds page and by reconcile).
    A failed or cancelled refund returned nothing: None.
    """
    now = now or clock_now()
    if refund.status in FAILED_STATES or refund.amount_fen <= 0:
        return None
    found = db.session.execute(
        select(ExternalRefund).where(ExternalRefund.provider_ref == refund.ref)
    ).scalar_one_or_none()
    if found is not None:
        return found
    topup = None
    if topup_id is not None:
        topup = db.session.execute(
            select(TopUp).where(TopUp.id == topup_id).with_for_update().execution_options(populate_existing=True)
        ).scalar_one_or_none()
    status = (
        EXTERNAL_UNMATCHED if topup is None else EXTERNAL_TAKEN if topup.status == CREDITED else EXTERNAL_BEFORE_CREDIT
    )
    row = ExternalRefund(
        provider=provider_name,
        provider_ref=refund.ref,
        kind=refund.kind,
        topup_id=topup.id if topup else None,
        payment_ref=refund.payment_ref,
        amount_fen=refund.amount_fen,
        created_at=now,
        status=status,
    )
    try:
        with db.session.begin_nested():
            db.session.add(row)
            db.session.flush()
            if status == EXTERNAL_TAKEN:
                _take_back(row, topup, now)
            db.session.flush()
    except IntegrityError:  # booked concurrently by another delivery
        return db.session.execute(select(ExternalRefund).where(ExternalRefund.provider_ref == refund.ref)).scalar_one()
    log.warning(
        "%s %s of %s fen made outside ChargeShed on top-up %s: %s (taken %s, shortfall %s)",
        refund.kind,
        refund.ref,
        refund.amount_fen,
        row.topup_id,
        row.status,
        row.taken_fen,
        row.shortfall_fen,
    )
    return row


def _take_back(row: ExternalRefund, topup: TopUp, now: datetime) -> None:
    wallet = ledger.wallet_account(topup.user_id)
    db.session.execute(select(LedgerAccount.id).where(LedgerAccount.id == wallet.id).with_for_update())
    row.taken_fen = min(ledger.wallet_balance(topup.user_id), row.amount_fen)
    row.shortfall_fen = row.amount_fen - row.taken_fen
    row.status = EXTERNAL_SHORTFALL if row.shortfall_fen else EXTERNAL_TAKEN
    ledger.post(
        f"external_refund:{row.provider_ref}"[:80],
        books.TXN_EXTERNAL_REFUND,
        [
            ledger.Leg(wallet, -row.taken_fen),
            ledger.Leg(books.losses_account(topup.provider), -row.shortfall_fen),
            ledger.Leg(ledger.external_account(topup.provider), row.amount_fen),
        ],
        memo=f"{row.kind} {row.provider_ref} on top-up {topup.id} made outside ChargeShed",
        at=now,
    )


def reverse_external_refund(ref: str, *, now: datetime | None = None) -> str:
    """An outside refund booked earlier failed after all (Stripe could not return the money): undo its
    booking once, in the caller's transaction. Returns "reversed", "already_reversed" or "unknown".

    Taken from the wallet: the money goes back to the wallet, and a shortfall's loss is undone.
    Before the credit: a top-up not credited yet will be credited in full; one credited less (or
    not at all, being refunded in full) is credited the rest now.
    """
    now = now or clock_now()
    row = db.session.execute(
        select(ExternalRefund)
        .where(ExternalRefund.provider_ref == ref)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if row is None:
        return "unknown"
    if row.status == EXTERNAL_FAILED:
        return "already_reversed"
    legs: list[ledger.Leg] = []
    topup = None
    if row.topup_id is not None:
        topup = db.session.execute(
            select(TopUp).where(TopUp.id == row.topup_id).with_for_update().execution_options(populate_existing=True)
        ).scalar_one()
    if row.status in (EXTERNAL_TAKEN, EXTERNAL_SHORTFALL):
        legs = [
            ledger.Leg(ledger.wallet_account(topup.user_id), row.taken_fen),
            ledger.Leg(books.losses_account(topup.provider), row.shortfall_fen),
            ledger.Leg(ledger.external_account(topup.provider), -row.amount_fen),
        ]
    elif row.status == EXTERNAL_BEFORE_CREDIT and topup.status in (CREDITED, REFUNDED):
        legs = [
            ledger.Leg(ledger.wallet_account(topup.user_id), row.amount_fen),
            ledger.Leg(ledger.external_account(topup.provider), -row.amount_fen),
        ]
        if topup.status == REFUNDED:
            topup.status, topup.credited_at = CREDITED, now
    row.status = EXTERNAL_FAILED
    what = f"{row.kind} {row.provider_ref} made outside ChargeShed " + (
        "was won, the money is back" if row.kind == "dispute" else "failed"
    )
    with db.session.begin_nested():
        db.session.flush()
        if legs:
            ledger.post(
                f"external_refund_failed:{row.provider_ref}"[:80],
                books.TXN_EXTERNAL_REFUND_FAILED,
                legs,
                memo=f"{what}: booked back",
                at=now,
            )
    log.warning("%s: its booking is reversed", what)
    return "reversed"


def external_refund_open(ref: str) -> bool:
    """True when this outside refund is booked and not reversed (it may still fail)."""
    status = db.session.execute(select(ExternalRefund.status).where(ExternalRefund.provider_ref == ref)).scalar()
    return status is not None and status != EXTERNAL_FAILED


def shortfalls(since: datetime | None = None) -> list[ExternalRefund]:
    """Outside refunds the wallet could not cover, and ones matching no top-up, newest first."""
    query = select(ExternalRefund).where(ExternalRefund.status.in_((EXTERNAL_SHORTFALL, EXTERNAL_UNMATCHED)))
    if since is not None:
        query = query.where(ExternalRefund.created_at >= since)
    return list(db.session.execute(query.order_by(ExternalRefund.id.desc())).scalars())
