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


def fulfil(topup_id: int, payment: Payment, *, now: datetime | None = None,
           start_ttl_seconds: int = 900) -> Fulfilment:
    """Credit the wallet for a paid top-up once, then start its waiting charge if still valid.

    Safe to call any number of times, in any order, from the webhook and the
    success redirect: the ledger's unique ref and a conditional status update
    make the credit happen exactly once.
    """
    now = now or clock_now()
    topup = db.session.get(TopUp, topup_id)
    if topup is None:
        log.warning("payment for unknown top-up %s (%s)", topup_id, payment.checkout_ref)
        return Fulfilment(None, problem="unknown_topup")
    if topup.checkout_ref != payment.checkout_ref:
        log.warning("top-up %s: checkout %s does not match %s", topup_id, payment.checkout_ref, topup.checkout_ref)
        return Fulfilment(topup, problem="checkout_mismatch")
    if payment.amount_fen != topup.amount_fen or payment.currency.lower() != topup.currency.lower():
        log.warning("top-up %s: paid %s %s, expected %s %s", topup_id, payment.amount_fen, payment.currency,
                    topup.amount_fen, topup.currency)
        return Fulfilment(topup, problem="amount_mismatch")

    result = Fulfilment(topup)
    claimed = db.session.execute(
        update(TopUp).where(TopUp.id == topup.id, TopUp.status == CREATED)
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
    _start_waiting_charge(topup, now, start_ttl_seconds, result)
    return result


def _start_waiting_charge(topup: TopUp, now: datetime, ttl_seconds: int, result: Fulfilment) -> None:
    if topup.start_port_id is None or topup.started_session_id is not None:
        result.session_id = topup.started_session_id
        return
    if (now - topup.created_at).total_seconds() > ttl_seconds:
        result.start_refused = "expired"
        return
    locked = db.session.execute(select(TopUp).where(TopUp.id == topup.id).with_for_update()).scalar_one()
    if locked.started_session_id is not None:
        result.session_id = locked.started_session_id
        db.session.commit()
        return
    port = db.session.get(Port, topup.start_port_id)
    try:
        session = charging.start_session(topup.user_id, port, now=now, topup=locked)
        result.session_id = session.id
    except charging.StartRefused as refused:
        db.session.rollback()
        result.start_refused = refused.code
