"""Exact payment fees: record each top-up's fee and net once, and book the fee."""

from __future__ import annotations

import logging

from sqlalchemy import update

from chargeshed.extensions import db
from chargeshed.money import ledger
from chargeshed.payments import books
from chargeshed.payments.models import CREDITED, TopUp
from chargeshed.payments.providers import Fee

log = logging.getLogger(__name__)


def book_fee(topup: TopUp, fee: Fee) -> str:
    """Store the fee and net on the top-up and book the fee, once.

    Returns "recorded", "already_recorded", or a problem: "fee_currency" when the
    provider settles in another currency than the top-up (not bookable in fen),
    "fee_amount" when the figures do not add up.
    """
    if fee.currency != topup.currency.lower():
        log.warning("top-up %s: fee in %s, top-up in %s; not booked", topup.id, fee.currency, topup.currency)
        return "fee_currency"
    if not 0 <= fee.fee <= topup.amount_fen or fee.fee + fee.net != topup.amount_fen:
        log.warning("top-up %s: fee %s + net %s does not make %s", topup.id, fee.fee, fee.net,
                    topup.amount_fen)
        return "fee_amount"
    claimed = db.session.execute(
        update(TopUp).where(TopUp.id == topup.id, TopUp.status == CREDITED, TopUp.fee_fen.is_(None))
        .values(fee_fen=fee.fee, net_fen=fee.net)
    ).rowcount
    if not claimed:
        db.session.rollback()
        return "already_recorded"
    try:
        if fee.fee:
            ledger.post(
                f"fee:topup:{topup.id}", books.TXN_PAYMENT_FEE,
                [ledger.Leg(ledger.external_account(topup.provider), -fee.fee),
                 ledger.Leg(books.fees_account(topup.provider), fee.fee)],
                memo=f"{topup.provider} fee on top-up {topup.id}",
            )
        db.session.commit()
    except ledger.AlreadyBooked:
        db.session.rollback()
        return "already_recorded"
    db.session.refresh(topup)
    log.info("top-up %s: fee %s, net %s", topup.id, fee.fee, fee.net)
    return "recorded"


def record_fee(topup: TopUp, provider) -> str:
    """Ask the provider for a credited top-up's fee and book it; "unknown" while it has none yet."""
    if topup.fee_fen is not None:
        return "already_recorded"
    fee = provider.fee_for(topup)
    if fee is None:
        return "unknown"
    return book_fee(topup, fee)
