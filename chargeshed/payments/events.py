"""Provider events (already verified): what each one changes. Every handler is idempotent.

`handle_event` is the unit of work of one webhook delivery: it commits each step, and never
keeps a transaction open while it asks Stripe something (the same goes for `settle_payment`,
shared with the success redirect and reconcile).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from sqlalchemy import select

from chargeshed.extensions import db
from chargeshed.money import ledger
from chargeshed.payments import fees, fulfilment, refunds
from chargeshed.payments.models import EXPIRED, FAILED, TopUp
from chargeshed.payments.providers import (
    Payment,
    ProviderRefund,
    field,
    object_id,
    payment_from_checkout,
    refund_from_dispute,
    refund_from_stripe,
)

log = logging.getLogger(__name__)

PAID_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
UNPAID_EVENTS = {"checkout.session.expired": EXPIRED, "checkout.session.async_payment_failed": FAILED}
REFUND_EVENTS = ("refund.created", "refund.updated", "refund.failed", "charge.refund.updated")
DISPUTE_EVENTS = ("charge.dispute.funds_withdrawn",)
DISPUTE_WON = "charge.dispute.funds_reinstated"
PAYOUT_EVENTS = ("payout.created", "payout.updated", "payout.paid", "payout.failed", "payout.canceled")


def handle_event(event, provider, *, start_ttl_seconds: int = 900) -> str:
    """Apply one verified Stripe event; returns a short outcome for the log. Commits."""
    obj = event.data.object
    if event.type in PAID_EVENTS:
        return _checkout_paid(obj, provider, start_ttl_seconds)
    if event.type in UNPAID_EVENTS:
        topup_id = _topup_id(obj)
        if topup_id is None:
            return "unknown_topup"
        changed = fulfilment.mark_unpaid(topup_id, obj.id, UNPAID_EVENTS[event.type])
        db.session.commit()
        return event.type.rsplit(".", 1)[1] if changed else "unchanged"
    if event.type in REFUND_EVENTS:
        refund = refund_from_stripe(obj)
        outcome = apply_refund(refund, provider)
        record_balance_txns(refund.balance_refs, provider)
        return outcome
    if event.type == "charge.refunded":
        # The charge does not list its refunds: ask for them.
        db.session.commit()
        outcomes = []
        for refund in provider.refunds_for_charge(obj.id):
            outcomes.append(apply_refund(refund, provider))
            record_balance_txns(refund.balance_refs, provider)
        return ",".join(sorted(set(outcomes))) or "no_refunds"
    if event.type in DISPUTE_EVENTS or event.type == DISPUTE_WON:
        dispute = refund_from_dispute(obj)
        outcome = apply_dispute(dispute, provider, won=event.type == DISPUTE_WON)
        record_balance_txns(dispute.balance_refs, provider)
        return outcome
    if event.type in PAYOUT_EVENTS:
        refs = [object_id(field(obj, "balance_transaction")), object_id(field(obj, "failure_balance_transaction"))]
        outcomes = record_balance_txns([ref for ref in refs if ref], provider)
        return "payout_" + ("recorded" if "recorded" in outcomes else ",".join(sorted(set(outcomes))) or "none")
    return "ignored"


def record_balance_txns(refs, provider) -> list[str]:
    """Book these provider balance transactions (a refund's, a payout's ...) that are not booked yet, in
    the settlement currency (fees.book_balance_txn). A unit of work of its own: asks the provider for
    each one with no transaction open and commits each booking. A lookup that fails is left to
    `reconcile` ("retry")."""
    outcomes = []
    for ref in refs:
        if not hasattr(provider, "balance_transaction"):
            break
        known = ledger.find_txn(fees.balance_ref(ref)) is not None
        db.session.commit()
        if known:
            outcomes.append("already_recorded")
            continue
        try:
            settled = provider.balance_transaction(ref)
        except Exception:
            log.warning("balance transaction %s not booked yet", ref, exc_info=True)
            outcomes.append("retry")
            continue
        outcome = fees.book_balance_txn(provider.name, settled)
        db.session.commit()
        if outcome not in ("recorded", "already_recorded", "nothing_to_book"):
            log.warning("balance transaction %s (%s) not booked: %s", ref, settled.txn.type, outcome)
        outcomes.append(outcome)
    return outcomes


def apply_refund(refund: ProviderRefund, provider) -> str:
    """One refund (or lost dispute) as Stripe reports it: ours is settled, any other is booked as
    made outside ChargeShed. Commits; may ask Stripe which top-up the payment was for."""
    outcome = refunds.apply_provider_refund(refund) if refund.kind == "refund" else "unknown_refund"
    db.session.commit()
    if outcome != "unknown_refund":
        return outcome
    if refunds.external_refund_known(refund.ref):
        if refund.status in refunds.FAILED_STATES and refunds.external_refund_open(refund.ref):
            outcome = refunds.reverse_external_refund(refund.ref)
            db.session.commit()
            return f"outside_{outcome}"
        db.session.commit()
        return "already_booked"
    db.session.commit()
    if refund.kind == "refund" and hasattr(provider, "refund_by_ref"):
        # Events come in any order: book the refund as it is now (a failed one returned nothing).
        try:
            refund = provider.refund_by_ref(refund.ref)
        except Exception:
            log.warning("refund %s: current state not read; booked as the event says", refund.ref, exc_info=True)
    topup_id = refund.topup_id or topup_for_payment(refund.payment_ref, provider)
    row = refunds.book_external_refund(refund, topup_id, provider.name)
    db.session.commit()
    return f"outside_{row.status}" if row is not None else "outside_nothing_returned"


def apply_dispute(dispute: ProviderRefund, provider, *, won: bool) -> str:
    """A dispute's money: withdrawn from us (booked as money returned outside ChargeShed), or, when
    `won`, put back by Stripe (the withdrawal's booking is reversed). Events come in any order: a won
    dispute's withdrawal is booked first unless it is booked already, so that a late withdrawal event
    finds it booked and reversed instead of taking the money again. Commits, as apply_refund."""
    outcome = apply_refund(dispute, provider)
    if won:
        outcome = apply_refund(replace(dispute, status=refunds.DISPUTE_REINSTATED), provider)
    return outcome


def topup_for_payment(payment_ref: str | None, provider) -> int | None:
    """The top-up a payment was for: from our books, else from the PaymentIntent's metadata."""
    if not payment_ref:
        return None
    known = db.session.execute(select(TopUp.id).where(TopUp.payment_ref == payment_ref)).scalar()
    db.session.commit()
    if known is not None:
        return known
    try:
        return provider.topup_id_for_payment(payment_ref)
    except Exception:
        log.warning("payment %s: top-up not found at the provider", payment_ref, exc_info=True)
        return None


def _topup_id(checkout) -> int | None:
    reference = getattr(checkout, "client_reference_id", None) or ""
    return int(reference) if reference.isdigit() else None


def _checkout_paid(checkout, provider, start_ttl_seconds: int) -> str:
    payment = payment_from_checkout(checkout)
    if payment is None:
        return "not_paid_yet"
    topup_id = _topup_id(checkout)
    if topup_id is None:
        log.warning("paid checkout %s without a top-up reference", checkout.id)
        return "unknown_topup"
    result = settle_payment(topup_id, payment, provider, start_ttl_seconds=start_ttl_seconds)
    if result.problem:
        return result.problem
    if result.session_id:
        outcome = "credited_and_started" if result.credited else "started"
    else:
        outcome = "credited" if result.credited else "already_credited"
    if result.topup is not None and result.topup.status == "refunded":
        outcome = "refunded_before_credit"
    return outcome


def settle_payment(
    topup_id: int, payment: Payment, provider, *, start_ttl_seconds: int = 900, now=None, record_fee: bool = True
) -> fulfilment.Fulfilment:
    """A confirmed payment, from the webhook, the success redirect or reconcile: book refunds Stripe
    already made on it (so a payment refunded first is never credited), credit it once, start the
    waiting charge, then record the fee. Commits after each step; no transaction is open while
    Stripe is asked. The success redirect passes record_fee=False: the resident does not wait for it."""
    db.session.commit()
    if payment.payment_ref and hasattr(provider, "refunds_for_payment"):
        try:
            earlier = provider.refunds_for_payment(payment.payment_ref)
        except Exception:  # fulfil anyway: a refund found later is taken back from the wallet
            log.warning("refunds of %s not checked before crediting", payment.payment_ref, exc_info=True)
            earlier = []
        for refund in earlier:
            if refund.refund_id is None and not refunds.external_refund_known(refund.ref):
                refunds.book_external_refund(refund, topup_id, provider.name, now=now)
        db.session.commit()
    result = fulfilment.fulfil(topup_id, payment, start_ttl_seconds=start_ttl_seconds, now=now)
    db.session.commit()
    if record_fee and result.topup is not None and not result.problem:
        # The charge has started (or was never asked for); the fee lookup may take its time.
        _record_fee_quietly(result.topup, provider)
    return result


def _record_fee_quietly(topup: TopUp, provider) -> None:
    if provider.is_demo:
        return
    try:
        fees.record_fee(topup, provider)
        db.session.commit()
    except Exception:  # the reconcile job records it later
        log.warning("fee of top-up %s not recorded yet", topup.id, exc_info=True)
        db.session.rollback()
