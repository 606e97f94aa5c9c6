"""POST /stripe/webhook: verified against the raw body, fulfilled idempotently."""

from __future__ import annotations

import logging

import stripe
from flask import Blueprint, current_app, request
from sqlalchemy.exc import IntegrityError

from chargeshed.extensions import csrf, db
from chargeshed.payments import fulfilment
from chargeshed.payments.models import WebhookEvent
from chargeshed.payments.providers import StripeProvider, payment_from_checkout, provider_from_config

bp = Blueprint("stripe_webhook", __name__)
log = logging.getLogger(__name__)

PAID_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")


@bp.post("/stripe/webhook")
@csrf.exempt
def webhook():
    """Credit paid top-ups; 400 for anything not signed by Stripe, 200 for the rest."""
    provider = provider_from_config(current_app.config)
    if not isinstance(provider, StripeProvider) or not provider.webhook_secret:
        return {"error": "stripe is not configured"}, 404
    try:
        event = provider.parse_event(request.get_data(), request.headers.get("Stripe-Signature"))
    except (ValueError, stripe.SignatureVerificationError) as exc:
        log.warning("rejected webhook: %s", type(exc).__name__)
        return {"error": "invalid signature or payload"}, 400
    outcome = handle_event(event)
    _record(event, outcome)
    log.info("webhook %s %s: %s", event.id, event.type, outcome)
    return {"received": True, "outcome": outcome}


def handle_event(event) -> str:
    """Apply one verified event; returns a short outcome for the log."""
    if event.type not in PAID_EVENTS:
        return "ignored"
    checkout = event.data.object
    payment = payment_from_checkout(checkout)
    if payment is None:
        return "not_paid_yet"
    reference = getattr(checkout, "client_reference_id", None) or ""
    if not reference.isdigit():
        log.warning("paid checkout %s without a top-up reference", checkout.id)
        return "unknown_topup"
    result = fulfilment.fulfil(int(reference), payment,
                               start_ttl_seconds=current_app.config["PENDING_START_TTL_SECONDS"])
    if result.problem:
        return result.problem
    if result.session_id:
        return "credited_and_started" if result.credited else "started"
    return "credited" if result.credited else "already_credited"


def _record(event, outcome: str) -> None:
    try:
        db.session.add(WebhookEvent(event_id=event.id, type=event.type, outcome=outcome[:80]))
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
