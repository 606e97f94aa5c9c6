"""POST /stripe/webhook: verified against the raw body, applied idempotently."""

from __future__ import annotations

import logging

import stripe
from flask import Blueprint, current_app, request
from sqlalchemy.exc import IntegrityError

from chargeshed.extensions import csrf, db
from chargeshed.payments.events import handle_event
from chargeshed.payments.models import WebhookEvent
from chargeshed.payments.providers import StripeProvider, provider_from_config

bp = Blueprint("stripe_webhook", __name__)
log = logging.getLogger(__name__)


@bp.post("/stripe/webhook")
@csrf.exempt
def webhook():
    """Apply a Stripe event; 400 for anything not signed by Stripe or not an event, 200 for the rest."""
    provider = provider_from_config(current_app.config)
    if not isinstance(provider, StripeProvider) or not provider.webhook_secret:
        return {"error": "stripe is not configured"}, 404
    try:
        event = provider.parse_event(request.get_data(), request.headers.get("Stripe-Signature"))
    except (ValueError, stripe.SignatureVerificationError) as exc:
        log.warning("rejected webhook: %s", type(exc).__name__)
        return {"error": "invalid signature or payload"}, 400
    outcome = handle_event(event, provider, start_ttl_seconds=current_app.config["PENDING_START_TTL_SECONDS"])
    _record(event, outcome)
    log.info("webhook %s %s: %s", event.id, event.type, outcome)
    return {"received": True, "outcome": outcome}


def _record(event, outcome: str) -> None:
    try:
        db.session.add(WebhookEvent(event_id=event.id, type=event.type[:80], outcome=outcome[:80]))
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
