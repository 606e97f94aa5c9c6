"""Top-up creation and fulfilment: credit exactly once, then start the waiting charge."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update

from chargeshed.charging import sessions as charging
from chargeshed.extensions import db
from chargeshed.money import ledger
from chargeshed.payments.models import (
    CREATED,
    CREDITED,
    EXTERNAL_BEFORE_CREDIT,
    FAILED,
    REFUNDED,
    ExternalRefund,
    TopUp,
)
from chargeshed.payments.providers import Payment
from chargeshed.sites.models import Port
from chargeshed.timeutil import now as clock_now

log = logging.getLogger(__name__)


class TopUpRefused(Exception):
    """A top-up request that cannot be made (unknown amount)."""


@dataclass
class Fulfilment:
    """What fulfilling a top-up did."""

    topup: TopUp | None
    credited: bool = False
    session_id: int | None = None
    start_refused: str | None = None
    problem: str | None = None


def create_topup(
    user_id: int, amount_fen: int, allowed: list[int], currency: str, provider: str, start_port: Port | None = None
) -> TopUp:
    """A new top-up for one of the allowed amounts, with a random idempotency key for its checkout.

    The caller commits, then creates the checkout outside the transaction.
    """
    if amount_fen not in allowed:
        raise TopUpRefused("amount")
    topup = TopUp(
        user_id=user_id,
        amount_fen=amount_fen,
        currency=currency,
        provider=provider,
        start_port_id=start_port.id if start_port else None,
        checkout_key=f"chargeshed-checkout-{secrets.token_hex(16)}",
    )
    db.session.add(topup)
    db.session.flush()
    return topup


def payment_problem(topup: TopUp, payment: Payment) -> str | None:
    """Why a confirmed payment does not pay for this top-up, or None when it does."""
    if topup.checkout_ref != payment.checkout_ref:
        return "checkout_mismatch"
    if payment.amount_fen != topup.amount_fen or payment.currency.lower() != topup.currency.lower():
        return "amount_mismatch"
    return None


def refunded_before_credit(topup_id: int) -> int:
    """Money of this top-up returned outside ChargeShed before it was credited."""
    return db.session.execute(
        select(func.coalesce(func.sum(ExternalRefund.amount_fen), 0)).where(
            ExternalRefund.topup_id == topup_id, ExternalRefund.status == EXTERNAL_BEFORE_CREDIT
        )
    ).scalar_one()


def fulfil(topup_id: int, payment: Payment, *, now: datetime | None = None, start_ttl_seconds: int = 900) -> Fulfilment:
    """Credit the wallet for a paid top-up once, then start its waiting charge if still valid.

    Works inside the caller's transaction (the caller commits). Safe to call any number of
    times, in any order, concurrently, from the webhook, the success redirect and the
    reconcile job: the ledger's unique ref and a conditional status update make the credit
    happen exactly once. Money refunded outside ChargeShed before the credit (a dashboard
    refund) is not credited; a top-up refunded in full becomes "refunded".
    """
    now = now or clock_now()
    topup = db.session.get(TopUp, topup_id)
    if topup is None:
        log.warning("payment for unknown top-up %s (%s)", topup_id, payment.checkout_ref)
        return Fulfilment(None, problem="unknown_topup")
    problem = payment_problem(topup, payment)
    if problem:
        log.warning(
            "top-up %s: %s: paid %s %s on %s, expected %s %s on %s",
            topup_id,
            problem,
            payment.amount_fen,
            payment.currency,
            payment.checkout_ref,
            topup.amount_fen,
            topup.currency,
            topup.checkout_ref,
        )
        return Fulfilment(topup, problem=problem)

    result = Fulfilment(topup)
    try:
        with db.session.begin_nested():
            result.credited = _credit(topup, payment, now)
    except ledger.AlreadyBooked:  # credited concurrently: our savepoint is undone, nothing else
        result.credited = False
    db.session.refresh(topup)
    start_waiting_charge(topup, now=now, ttl_seconds=start_ttl_seconds, result=result)
    return result


def _credit(topup: TopUp, payment: Payment, now: datetime) -> bool:
    # Any unpaid state may become credited: a late payment is still the resident's money. The
    # conditional UPDATE also locks the row against a concurrent refund booking.
    claimed = db.session.execute(
        update(TopUp)
        .where(TopUp.id == topup.id, TopUp.status.not_in((CREDITED, REFUNDED)))
        .values(status=CREDITED, credited_at=now, payment_ref=payment.payment_ref, problem="")
    ).rowcount
    if not claimed:
        return False
    amount = topup.amount_fen - refunded_before_credit(topup.id)
    if amount <= 0:
        db.session.execute(update(TopUp).where(TopUp.id == topup.id).values(status=REFUNDED, credited_at=None))
        log.warning("top-up %s was refunded before it was credited: nothing credited", topup.id)
        return False
    ledger.post(
        f"topup:{topup.id}",
        "topup",
        [
            ledger.Leg(ledger.external_account(topup.provider), -amount),
            ledger.Leg(ledger.wallet_account(topup.user_id), amount),
        ],
        memo=f"top-up {topup.id} via {topup.provider} {payment.checkout_ref}",
        at=now,
    )
    log.info("top-up %s credited %s fen to user %s", topup.id, amount, topup.user_id)
    return True


def start_waiting_charge(
    topup: TopUp, *, now: datetime | None = None, ttl_seconds: int = 900, result: Fulfilment | None = None
) -> Fulfilment:
    """For a credited "top up and start", start the charge once (idempotent, race-safe).

    Inside the caller's transaction: the top-up row stays locked until the caller commits, so
    two deliveries cannot both start it; a refused start changes nothing.
    """
    now = now or clock_now()
    result = result or Fulfilment(topup)
    if topup.status != CREDITED or topup.start_port_id is None or topup.started_session_id is not None:
        result.session_id = topup.started_session_id
        return result
    if (now - topup.created_at).total_seconds() > ttl_seconds:
        result.start_refused = "expired"
        return result
    # Re-read under a row lock: another delivery may have started it meanwhile.
    locked = db.session.execute(
        select(TopUp).where(TopUp.id == topup.id).with_for_update().execution_options(populate_existing=True)
    ).scalar_one()
    if locked.started_session_id is not None:
        result.session_id = locked.started_session_id
        return result
    port = db.session.get(Port, topup.start_port_id)
    try:
        session = charging.start_session(topup.user_id, port, now=now, topup=locked)
        result.session_id = session.id
    except charging.StartRefused as refused:
        result.start_refused = refused.code
    return result


def mark_failed_to_start(topup_id: int) -> None:
    """The provider could not open a checkout for this top-up: it will never be paid (caller commits)."""
    db.session.execute(
        update(TopUp)
        .where(TopUp.id == topup_id, TopUp.status == CREATED)
        .values(status=FAILED, problem="provider_unavailable")
    )


def mark_unpaid(topup_id: int, checkout_ref: str, status: str) -> bool:
    """Record that a checkout ended without payment (expired, failed); never touches a credited top-up.

    Inside the caller's transaction (the caller commits).
    """
    changed = db.session.execute(
        update(TopUp)
        .where(TopUp.id == topup_id, TopUp.checkout_ref == checkout_ref, TopUp.status == CREATED)
        .values(status=status)
    ).rowcount
    return bool(changed)
