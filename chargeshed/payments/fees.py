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

Every other balance transaction is booked the same way, once, under `balance:<its id>`, in the
settlement currency at the rate Stripe used for it (not the payment's):

    refund (a cash-out's or one made outside ChargeShed; amount and net negative):
    CNY: external:stripe -refunded         exchange:stripe     +refunded
    HKD: exchange:stripe:hkd +amount       external:stripe:hkd -net          fees:stripe:hkd -fee
    refund_failure: the same with the signs of the money coming back. A dispute's withdrawal
    (an adjustment whose source is the dispute, its fee the dispute fee) is booked like a refund;
    a won dispute's reinstatement like a refund failure, its fee negative when the fee comes back.

    payout (Stripe pays the balance out to the bank; amount and net negative):
    HKD: external:stripe:hkd -net          payouts:stripe:hkd +amount        fees:stripe:hkd -fee
    payout_failure: the same, money coming back.

Together `external:stripe:<currency>` then holds minus Stripe's balance in that currency, which
`reconcile` checks against Stripe's own figure.
"""

from __future__ import annotations

import logging
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import update

from chargeshed.extensions import db
from chargeshed.money import ledger
from chargeshed.payments import books
from chargeshed.payments.models import CREDITED, REFUNDED, TopUp
from chargeshed.payments.providers import Fee, Settled

log = logging.getLogger(__name__)


def cny_equivalent(fee_minor: int, amount_fen: int, gross_minor: int) -> int:
    """A fee in the settlement currency as fen, at the rate of its own payment (half up)."""
    if gross_minor <= 0:
        return 0
    return int((Decimal(fee_minor) * amount_fen / gross_minor).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def fee_problem(topup: TopUp, fee: Fee) -> str | None:
    """Why a balance transaction cannot be booked for this top-up, or None."""
    gross = _gross(fee)
    if gross <= 0 or fee.fee > gross:
        return "fee_amount"
    return settlement_problem(topup.amount_fen, topup.currency, fee)


def settlement_problem(amount: int, currency: str, txn: Fee, *, fee_may_come_back: bool = False) -> str | None:
    """Why `txn` cannot be booked as settling `amount` (minor units, unsigned) of `currency`, or None:
    "fee_amount" when its figures do not add up, "fee_currency" when it was converted without a rate.
    A negative fee (a fee given back, as a won dispute's may be) only when `fee_may_come_back`."""
    gross = _gross(txn)
    if (txn.fee < 0 and not fee_may_come_back) or txn.fee + txn.net != gross:
        return "fee_amount"
    if txn.currency == currency.lower():
        return None if abs(gross) == amount else "fee_amount"
    if txn.exchange_rate is None:
        return "fee_currency"
    # Stripe rounds the converted amount to the settlement currency's minor unit.
    if abs(Decimal(amount) * txn.exchange_rate - abs(gross)) > 1:
        return "fee_amount"
    return None


def _gross(txn: Fee) -> int:
    return txn.amount if txn.amount is not None else txn.fee + txn.net


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
                .where(TopUp.id == topup.id, TopUp.status.in_((CREDITED, REFUNDED)), TopUp.fee_fen.is_(None))
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
    return conversion_legs(topup.provider, topup.currency, topup.amount_fen, fee)


def conversion_legs(provider: str, currency: str, amount: int, txn: Fee) -> list[ledger.Leg]:
    """`amount` of `currency` (signed: positive when money came in) converted by the provider into its
    settlement currency as `txn` says: each currency balances, the exchange legs keep the rate."""
    return [
        ledger.Leg(ledger.external_account(provider), amount),
        ledger.Leg(books.exchange_account(provider, currency), -amount),
        ledger.Leg(books.exchange_account(provider, txn.currency), txn.fee + txn.net),
        ledger.Leg(ledger.external_account(provider, txn.currency), -txn.net),
        ledger.Leg(books.fees_account(provider, txn.currency), -txn.fee),
    ]


# Balance transaction types (Stripe names card ones "refund", other methods' "payment_refund"),
# with the sign of the money they bring back into the balance.
REFUND_TYPES = {"refund": -1, "payment_refund": -1, "refund_failure": 1, "payment_failure_refund": 1}
PAYOUT_TYPES = ("payout", "payout_failure")
PAYMENT_TYPES = ("charge", "payment")  # booked with their top-up (fee:topup:<id>)


def balance_ref(txn_ref: str) -> str:
    """The ledger ref of a provider balance transaction booked by book_balance_txn."""
    return f"balance:{txn_ref}"[:80]


def book_balance_txn(provider: str, settled: Settled) -> str:
    """Book a refund's, refund failure's, payout's or payout failure's balance transaction once, in the
    settlement currency at the provider's rate for it, inside the caller's transaction.

    Returns "recorded", "already_recorded", "nothing_to_book" (settled in the refund's own currency
    without a fee: the refund's own booking says it all), or why it cannot be booked:
    "unsupported_type", "fee_source" (the refund's amount is unknown), "fee_amount", "fee_currency".
    """
    txn = settled.txn
    ref = balance_ref(txn.ref or "")
    if not txn.ref:
        return "fee_source"
    if ledger.find_txn(ref) is not None:
        return "already_recorded"
    dispute = txn.type == "adjustment" and settled.source_object == "dispute"
    if txn.type in REFUND_TYPES or dispute:
        if settled.source_amount is None or not settled.source_currency:
            return "fee_source"
        reinstated = dispute and _gross(txn) > 0  # a won dispute: the money (and maybe its fee) put back
        problem = settlement_problem(settled.source_amount, settled.source_currency, txn, fee_may_come_back=reinstated)
        if problem:
            return problem
        sign = (1 if reinstated else -1) if dispute else REFUND_TYPES[txn.type]
        money = sign * settled.source_amount
        if txn.currency == settled.source_currency:
            legs = [
                ledger.Leg(ledger.external_account(provider, txn.currency), txn.fee),
                ledger.Leg(books.fees_account(provider, txn.currency), -txn.fee),
            ]
        else:
            legs = conversion_legs(provider, settled.source_currency, money, txn)
        kind = books.TXN_REFUND_SETTLEMENT
        memo = (
            f"{provider} {txn.type} {txn.source}: {money} {settled.source_currency} as {_gross(txn)} "
            f"{txn.currency} at {txn.exchange_rate}, fee {txn.fee}"
        )
    elif txn.type in PAYOUT_TYPES:
        if txn.fee < 0 or txn.fee + txn.net != _gross(txn):
            return "fee_amount"
        legs = [
            ledger.Leg(ledger.external_account(provider, txn.currency), -txn.net),
            ledger.Leg(books.payouts_account(provider, txn.currency), _gross(txn)),
            ledger.Leg(books.fees_account(provider, txn.currency), -txn.fee),
        ]
        kind = books.TXN_PAYOUT
        memo = f"{provider} {txn.type} {txn.source}: {_gross(txn)} {txn.currency}, fee {txn.fee}"
    else:
        return "unsupported_type"
    if not any(leg.amount_fen for leg in legs):
        return "nothing_to_book"
    try:
        ledger.post(ref, kind, legs, memo=memo)
    except ledger.AlreadyBooked:
        return "already_recorded"
    log.info("%s balance transaction %s (%s) booked: %s", provider, txn.ref, txn.type, memo)
    return "recorded"


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
