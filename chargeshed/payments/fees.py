"""Exact payment fees: record each top-up's fee and net once, and book them in the currency Stripe
settled them in.

Sign convention (the same as for refunds): `external:<provider>` goes below zero when money comes
in from outside and back up when money leaves, so minus its balance is what the provider holds for
us. A fee is money leaving: `external:<provider>` +fee, `fees:<provider>` -fee (a cost, negative).

Settlement currency: Stripe converts a CNY payment into the account's currency (HKD, USD, ...).
The top-up is then booked in fen as always, and its balance transaction in the settlement currency:

    CNY: external:stripe +amount          exchange:stripe     -amount        (the CNY converted)
    HKD: exchange:stripe:hkd +gross       external:stripe:hkd -net           fees:stripe:hkd -fee

Each currency balances on its own; the pair of exchange legs keeps Stripe's rate (gross / amount).
Statements show a fee's CNY equivalent as fee x amount / gross.
"""

from __future__ import annotations

import logging
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import update

from chargeshed.extensions import db
from chargeshed.money import ledger
from chargeshed.payments import books
from chargeshed.payments.models import CREDITED, TopUp
from chargeshed.payments.providers import Fee

log = logging.getLogger(__name__)


def cny_equivalent(fee_minor: int, amount_fen: int, gross_minor: int) -> int:
    """A fee in the settlement currency as fen, at the rate of its own payment (half up)."""
    if gross_minor <= 0:
        return 0
    return int((Decimal(fee_minor) * amount_fen / gross_minor).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def fee_problem(topup: TopUp, fee: Fee) -> str | None:
    """Why a balance transaction cannot be booked for this top-up, or None."""
    gross = fee.amount if fee.amount is not None else fee.fee + fee.net
    if fee.fee < 0 or fee.fee + fee.net != gross or fee.fee > gross:
        return "fee_amount"
    if fee.currency == topup.currency.lower():
        return None if gross == topup.amount_fen else "fee_amount"
    if fee.exchange_rate is None:
        return "fee_currency"
    # Stripe rounds the converted amount to the settlement currency's minor unit.
    if abs(Decimal(topup.amount_fen) * fee.exchange_rate - gross) > 1:
        return "fee_amount"
    return None


def book_fee(topup: TopUp, fee: Fee) -> str:
    """Store the fee and net on the top-up and book them, once, inside the caller's transaction.

    Returns "recorded", "already_recorded", or a problem: "fee_currency" when the provider
    settled in another currency without saying at what rate, "fee_amount" when the figures do
    not add up. Nothing is written unless it returns "recorded".
    """
    problem = fee_problem(topup, fee)
    if problem:
        log.warning(
            "top-up %s: balance transaction not booked (%s): fee %s net %s %s rate %s for %s %s",
            topup.id,
            problem,
            fee.fee,
            fee.net,
            fee.currency,
            fee.exchange_rate,
            topup.amount_fen,
            topup.currency,
        )
        return problem
    foreign = fee.currency != topup.currency.lower()
    try:
        with db.session.begin_nested():
            claimed = db.session.execute(
                update(TopUp)
                .where(TopUp.id == topup.id, TopUp.status == CREDITED, TopUp.fee_fen.is_(None))
                .values(
                    fee_fen=fee.fee,
                    net_fen=fee.net,
                    fee_currency=fee.currency,
                    exchange_rate=str(fee.exchange_rate) if foreign else None,
                )
            ).rowcount
            if not claimed:
                return "already_recorded"
            legs = _foreign_legs(topup, fee) if foreign else _legs(topup, fee)
            if legs:
                ledger.post(f"fee:topup:{topup.id}", books.TXN_PAYMENT_FEE, legs, memo=_memo(topup, fee, foreign))
    except ledger.AlreadyBooked:
        return "already_recorded"
    db.session.refresh(topup)
    log.info("top-up %s: fee %s, net %s %s", topup.id, fee.fee, fee.net, fee.currency)
    return "recorded"


def _legs(topup: TopUp, fee: Fee) -> list[ledger.Leg]:
    if not fee.fee:
        return []
    return [
        ledger.Leg(ledger.external_account(topup.provider), fee.fee),
        ledger.Leg(books.fees_account(topup.provider), -fee.fee),
    ]


def _foreign_legs(topup: TopUp, fee: Fee) -> list[ledger.Leg]:
    gross = fee.fee + fee.net
    return [
        ledger.Leg(ledger.external_account(topup.provider), topup.amount_fen),
        ledger.Leg(books.exchange_account(topup.provider, topup.currency), -topup.amount_fen),
        ledger.Leg(books.exchange_account(topup.provider, fee.currency), gross),
        ledger.Leg(ledger.external_account(topup.provider, fee.currency), -fee.net),
        ledger.Leg(books.fees_account(topup.provider, fee.currency), -fee.fee),
    ]


def _memo(topup: TopUp, fee: Fee, foreign: bool) -> str:
    if not foreign:
        return f"{topup.provider} fee on top-up {topup.id}"
    return (
        f"{topup.provider} settled top-up {topup.id} ({topup.amount_fen} {topup.currency}) as "
        f"{fee.fee + fee.net} {fee.currency} at {fee.exchange_rate}: fee {fee.fee}, net {fee.net}"
    )


def record_fee(topup: TopUp, provider) -> str:
    """Ask the provider for a credited top-up's fee and book it; "unknown" while it has none yet.

    Makes a network call: call it with no transaction open, and commit afterwards.
    """
    if topup.fee_fen is not None:
        return "already_recorded"
    fee = provider.fee_for(topup)
    if fee is None:
        return "unknown"
    return book_fee(topup, fee)
