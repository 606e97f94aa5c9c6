"""Provider events (already verified): what each one changes. Every handler is idempotent."""

from __future__ import annotations

import logging

from chargeshed.extensions import db
from chargeshed.payments import fees, fulfilment, refunds
from chargeshed.payments.models import EXPIRED, FAILED, TopUp
from chargeshed.payments.providers import payment_from_checkout, refund_from_stripe

log = logging.getLogger(__name__)

PAID_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
UNPAID_EVENTS = {"checkout.session.expired": EXPIRED, "checkout.session.async_payment_failed": FAILED}
REFUND_EVENTS = ("refund.created", "refund.updated", "refund.failed", "charge.refund.updated")


def handle_event(event, provider, *, start_ttl_seconds: int = 900) -> str:
    """Apply one verified Stripe event; returns a short outcome for the log."""
    obj = event.data.object
    if event.type in PAID_EVENTS:
        return _checkout_paid(obj, provider, start_ttl_seconds)
    if event.type in UNPAID_EVENTS:
        topup_id = _topup_id(obj)
        if topup_id is None:
            return "unknown_topup"
        changed = fulfilment.mark_unpaid(topup_id, obj.id, UNPAID_EVENTS[event.type])
        return event.type.rsplit(".", 1)[1] if changed else "unchanged"
    if event.type in REFUND_EVENTS:
        return refunds.apply_provider_refund(refund_from_stripe(obj))
    if event.type == "charge.refunded":
        # The charge does not list its refunds: ask for them.
        outcomes = [refunds.apply_provider_refund(r) for r in provider.refunds_for_charge(obj.id)]
        return ",".join(sorted(set(outcomes))) or "no_refunds"
    return "ignored"


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
    result = fulfilment.fulfil(topup_id, payment, start_ttl_seconds=start_ttl_seconds)
    if result.problem:
        return result.problem
    if result.session_id:
        outcome = "credited_and_started" if result.credited else "started"
    else:
        outcome = "credited" if result.credited else "already_credited"
    # The charge has started (or was never asked for); the fee lookup may take its time.
    _record_fee_quietly(result.topup, provider)
    return outcome


def _record_fee_quietly(topup: TopUp, provider) -> None:
    try:
        fees.record_fee(topup, provider)
    except Exception:  # the reconcile job records it later
        log.warning("fee of top-up %s not recorded yet", topup.id, exc_info=True)
        db.session.rollback()
