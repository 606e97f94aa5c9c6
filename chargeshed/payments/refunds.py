"""Money going back: wallet cash-outs refunded to the resident's payment methods, and
staff goodwill refunds of charge sessions.

Cash-out: the wallet money moves to refunds:pending at once; each provider refund
(one per top-up, most recent top-ups first) then either completes (pending ->
external:<provider>) or fails (pending -> wallet). Every step is booked under its
own ledger ref and guarded by a conditional status update, so webhook duplicates,
reordering and the reconcile job never book anything twice.
"""

from __future__ import annotations

import logging
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
    REFUND_FAILED,
    REFUND_PENDING,
    REFUND_SUCCEEDED,
    CashOut,
    SessionRefund,
    TopUp,
    TopUpRefund,
)
from chargeshed.payments.providers import ProviderRefund, RefundRejected
from chargeshed.timeutil import now as clock_now

log = logging.getLogger(__name__)

FAILED_STATES = ("failed", "canceled")


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

def refundable_topups(user_id: int, provider: str, *, now: datetime | None = None,
                      window_days: int = REFUND_WINDOW_DAYS) -> list[Refundable]:
    """The resident's top-ups through `provider` that can still be refunded, most recent first."""
    now = now or clock_now()
    taken = (
        select(TopUpRefund.topup_id, func.sum(TopUpRefund.amount_fen).label("fen"))
        .where(TopUpRefund.status != REFUND_FAILED).group_by(TopUpRefund.topup_id).subquery()
    )
    query = (
        select(TopUp, func.coalesce(taken.c.fen, 0))
        .outerjoin(taken, taken.c.topup_id == TopUp.id)
        .where(TopUp.user_id == user_id, TopUp.provider == provider, TopUp.status == CREDITED,
               TopUp.credited_at >= now - timedelta(days=window_days))
        .order_by(TopUp.credited_at.desc(), TopUp.id.desc())
    )
    if provider != "demo":
        query = query.where(TopUp.payment_ref.is_not(None))
    return [Refundable(t, t.amount_fen - fen) for t, fen in db.session.execute(query) if t.amount_fen > fen]


def withdrawable_fen(user_id: int, provider: str, *, now: datetime | None = None,
                     window_days: int = REFUND_WINDOW_DAYS) -> int:
    """How much the resident can cash out now: their balance, up to what their top-ups can return."""
    found = refundable_topups(user_id, provider, now=now, window_days=window_days)
    return min(ledger.wallet_balance(user_id), sum(r.rest_fen for r in found))


def request_cashout(user_id: int, amount_fen: int, provider, *, now: datetime | None = None,
                    window_days: int = REFUND_WINDOW_DAYS, request_key: str | None = None) -> CashOut:
    """Withdraw `amount_fen` from the wallet, refunded against the most recent top-ups.

    Books wallet -> refunds:pending and asks the provider for one refund per top-up
    (deterministic idempotency keys). Raises CashOutRefused (nothing changed) when
    the amount is not positive, above the balance, or above what can be refunded.
    A repeated `request_key` (a double submit) returns the first cash-out.
    """
    now = now or clock_now()
    if not isinstance(amount_fen, int) or amount_fen <= 0:
        raise CashOutRefused("amount")
    if request_key and (earlier := _cashout_by_key(user_id, request_key)) is not None:
        return earlier
    # One cash-out at a time per wallet (a row lock where the database has them).
    wallet = ledger.wallet_account(user_id)
    db.session.execute(select(LedgerAccount.id).where(LedgerAccount.id == wallet.id).with_for_update())
    balance = ledger.wallet_balance(user_id)
    refundable = refundable_topups(user_id, provider.name, now=now, window_days=window_days)
    possible = min(balance, sum(r.rest_fen for r in refundable))
    if amount_fen > possible:
        db.session.rollback()
        raise CashOutRefused("over_balance" if amount_fen > balance else "over_refundable", possible)

    cashout = CashOut(user_id=user_id, amount_fen=amount_fen, provider=provider.name, created_at=now,
                      request_key=request_key or None)
    try:
        with db.session.begin_nested():
            db.session.add(cashout)
            db.session.flush()
    except IntegrityError:  # the same form submitted twice at once
        db.session.rollback()
        earlier = _cashout_by_key(user_id, request_key)
        if earlier is None:
            raise
        return earlier
    left = amount_fen
    for item in refundable:
        if left == 0:
            break
        part = min(left, item.rest_fen)
        db.session.add(TopUpRefund(cashout_id=cashout.id, topup_id=item.topup.id, amount_fen=part,
                                   created_at=now))
        left -= part
    try:
        ledger.post(f"cashout:{cashout.id}", books.TXN_CASHOUT,
                    [ledger.Leg(wallet, -amount_fen),
                     ledger.Leg(books.pending_refunds_account(), amount_fen)],
                    memo=f"cash-out {cashout.id} of user {user_id}")
    except ledger.InsufficientFunds:
        db.session.rollback()
        raise CashOutRefused("over_balance", ledger.wallet_balance(user_id)) from None
    db.session.commit()
    log.info("cash-out %s: user %s withdraws %s fen in %s refunds", cashout.id, user_id, amount_fen,
             len(cashout.parts))
    for part in list(cashout.parts):
        submit_refund(part, provider, now=now)
    db.session.refresh(cashout)
    return cashout


def _cashout_by_key(user_id: int, request_key: str | None) -> CashOut | None:
    found = db.session.execute(select(CashOut).where(CashOut.request_key == request_key)).scalar_one_or_none()
    return found if found is not None and found.user_id == user_id else None


def refund_key(part: TopUpRefund) -> str:
    """The idempotency key of a refund: the same part never refunds twice, even when retried."""
    return f"chargeshed-refund-{part.id}-{part.topup.payment_ref or part.topup.checkout_ref}"


def submit_refund(part: TopUpRefund, provider, *, now: datetime | None = None) -> str:
    """Ask the provider to refund one part (again, safely: same key). Returns what happened."""
    if part.status != REFUND_PENDING:
        return "settled"
    metadata = {"refund_id": str(part.id), "cashout_id": str(part.cashout_id), "topup_id": str(part.topup_id)}
    try:
        result = provider.refund(part.topup, part.amount_fen, key=refund_key(part), metadata=metadata)
    except RefundRejected as rejected:
        log.warning("refund %s refused by %s: %s", part.id, provider.name, rejected.code)
        settle_refund(part.id, REFUND_FAILED, failure_reason=rejected.code, now=now)
        return "rejected"
    except Exception:  # network or provider trouble: stays pending, the reconcile job retries
        log.exception("refund %s could not be submitted; will retry", part.id)
        db.session.rollback()
        return "retry"
    if part.provider_ref != result.ref:
        part.provider_ref = result.ref
        db.session.commit()
    if provider.settles_refunds_at_once:
        return apply_provider_refund(result, now=now)
    return "submitted"


def apply_provider_refund(refund: ProviderRefund, *, now: datetime | None = None) -> str:
    """Bring our refund in line with the provider's view of it (webhook or reconcile)."""
    part = db.session.execute(
        select(TopUpRefund).where(TopUpRefund.provider_ref == refund.ref)).scalar_one_or_none()
    if part is None and refund.refund_id is not None:
        part = db.session.get(TopUpRefund, refund.refund_id)
        if part is not None and (part.provider_ref not in (None, refund.ref)
                                 or (refund.payment_ref and part.topup.payment_ref != refund.payment_ref)):
            part = None
        if part is not None:
            part.provider_ref = refund.ref
            db.session.commit()
    if part is None:
        log.warning("refund %s (%s fen) is not one of ours", refund.ref, refund.amount_fen)
        return "unknown_refund"
    if refund.status == REFUND_SUCCEEDED:
        return settle_refund(part.id, REFUND_SUCCEEDED, now=now)
    if refund.status in FAILED_STATES:
        return settle_refund(part.id, REFUND_FAILED, failure_reason=refund.failure_reason, now=now)
    return "refund_pending" if part.status == REFUND_PENDING else "already_settled"


def settle_refund(part_id: int, status: str, *, failure_reason: str = "", now: datetime | None = None) -> str:
    """Move one refund to succeeded or failed and book it, exactly once.

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
        claimed = db.session.execute(
            update(TopUpRefund).where(TopUpRefund.id == part.id, TopUpRefund.status == previous)
            .values(status=status, settled_at=now, failure_reason=failure_reason[:80])
        ).rowcount
        if not claimed:
            continue
        try:
            legs = [ledger.Leg(source, -part.amount_fen), ledger.Leg(target, part.amount_fen)]
            ledger.post(ref, kind, legs,
                        memo=f"refund {part.id} of cash-out {part.cashout_id}: {status}")
        except ledger.AlreadyBooked:
            db.session.rollback()
            return "already_settled"
        _update_cashout(part.cashout_id, now)
        db.session.commit()
        log.info("refund %s %s -> %s", part.id, previous, status)
        return f"refund_{status}"
    db.session.rollback()
    return "already_settled"


def _update_cashout(cashout_id: int, now: datetime) -> None:
    cashout = db.session.execute(
        select(CashOut).where(CashOut.id == cashout_id).with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()
    states = db.session.execute(
        select(TopUpRefund.status).where(TopUpRefund.cashout_id == cashout_id)).scalars().all()
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
    held = db.session.execute(select(LedgerAccount.balance_fen)
                              .where(LedgerAccount.code == books.PENDING_REFUNDS_CODE)).scalar() or 0
    if held != on_the_way:
        return [f"{books.PENDING_REFUNDS_CODE} has {held} fen but pending refunds add up to {on_the_way} fen"]
    return []


def pending_refunds() -> list[TopUpRefund]:
    """Refunds still waiting for the provider, oldest first."""
    return list(db.session.execute(
        select(TopUpRefund).where(TopUpRefund.status == REFUND_PENDING).order_by(TopUpRefund.id)).scalars())


# ---------------------------------------------------------------- goodwill refunds

def refund_session(staff_id: int, session: ChargeSession, amount_fen: int, reason: str, *,
                   now: datetime | None = None) -> SessionRefund:
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
    row = SessionRefund(session_id=session.id, staff_id=staff_id, amount_fen=amount_fen, reason=reason[:255],
                        created_at=now)
    try:
        with db.session.begin_nested():
            db.session.add(row)
            db.session.flush()
        ledger.post(ref, books.TXN_SESSION_REFUND,
                    [ledger.Leg(ledger.revenue_account(session.shed_id), -amount_fen),
                     ledger.Leg(ledger.wallet_account(session.user_id), amount_fen)],
                    memo=f"goodwill refund of session {session.id} by staff {staff_id}: {reason}")
    except (IntegrityError, ledger.AlreadyBooked):
        db.session.rollback()
        raise SessionRefundRefused("already_refunded") from None
    db.session.commit()
    log.info("session %s refunded %s fen by staff %s: %s", session.id, amount_fen, staff_id, reason)
    return row
