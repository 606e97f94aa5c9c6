"""Top-up creation and fulfilment: credit exactly once, then start the waiting charge."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from chargeshed.charging import sessions as charging
from chargeshed.extensions import db
from chargeshed.money import ledger
from chargeshed.payments.models import CREATED, CREDITED, TopUp
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


def create_topup(user_id: int, amount_fen: int, allowed: list[int], currency: str, provider: str,
                 start_port: Port | None = None) -> TopUp:
    """A new top-up for one of the allowed amounts (caller creates the checkout, then commits)."""
    if amount_fen not in allowed:
        raise TopUpRefused("amount")
    topup = TopUp(user_id=user_id, amount_fen=amount_fen, currency=currency, provider=provider,
                  start_port_id=start_port.id if start_port else None)
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


def fulfil(topup_id: int, payment: Payment, *, now: datetime | None = None,
           start_ttl_seconds: int = 900) -> Fulfilment:
    """Credit the wallet for a paid top-up once, then start its waiting charge if still valid.

    Safe to call any number of times, in any order, concurrently, from the webhook,
    the success redirect and the reconcile job: the ledger's unique ref and a
    conditional status update make the credit happen exactly once.
    """
    now = now or clock_now()
    topup = db.session.get(TopUp, topup_id)
    if topup is None:
        log.warning("payment for unknown top-up %s (%s)", topup_id, payment.checkout_ref)
        return Fulfilment(None, problem="unknown_topup")
    problem = payment_problem(topup, payment)
    if problem:
        log.warning("top-up %s: %s: paid %s %s on %s, expected %s %s on %s", topup_id, problem,
                    payment.amount_fen, payment.currency, payment.checkout_ref,
                    topup.amount_fen, topup.currency, topup.checkout_ref)
        return Fulfilment(topup, problem=problem)

    result = Fulfilment(topup)
    # Any state but credited may become credited: a late payment is still the resident's money.
    claimed = db.session.execute(
        update(TopUp).where(TopUp.id == topup.id, TopUp.status != CREDITED)
        .values(status=CREDITED, credited_at=now, payment_ref=payment.payment_ref)
    ).rowcount
    if claimed:
        try:
            ledger.post(
                f"topup:{topup.id}", "topup",
                [ledger.Leg(ledger.external_account(topup.provider), -topup.amount_fen),
                 ledger.Leg(ledger.wallet_account(topup.user_id), topup.amount_fen)],
                memo=f"top-up {topup.id} via {topup.provider} {payment.checkout_ref}",
            )
            db.session.commit()
            result.credited = True
            log.info("top-up %s credited %s fen to user %s", topup.id, topup.amount_fen, topup.user_id)
        except ledger.AlreadyBooked:
            db.session.rollback()
    else:
        db.session.rollback()
    db.session.refresh(topup)
    start_waiting_charge(topup, now=now, ttl_seconds=start_ttl_seconds, result=result)
    return result


def start_waiting_charge(topup: TopUp, *, now: datetime | None = None, ttl_seconds: int = 900,
                         result: Fulfilment | None = None) -> Fulfilment:
    """For a credited "top up and start", start the charge once (idempotent, race-safe)."""
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
        db.session.commit()
        return result
    port = db.session.get(Port, topup.start_port_id)
    try:
        session = charging.start_session(topup.user_id, port, now=now, topup=locked)
        result.session_id = session.id
    except charging.StartRefused as refused:
        db.session.rollback()
        result.start_refused = refused.code
    return result


def mark_unpaid(topup_id: int, checkout_ref: str, status: str) -> bool:
    """Record that a checkout ended without payment (expired, failed); never touches a credited top-up."""
    changed = db.session.execute(
        update(TopUp).where(TopUp.id == topup_id, TopUp.checkout_ref == checkout_ref, TopUp.status == CREATED)
        .values(status=status)
    ).rowcount
    db.session.commit()
    return bool(changed)
