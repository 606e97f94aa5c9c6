"""Payment providers behind one small interface: Stripe Checkout, or the demo stand-in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import stripe

from chargeshed.payments.models import TopUp


@dataclass(frozen=True)
class CheckoutUrls:
    """Where the provider sends the resident: back on success or cancel; the demo page."""

    success: str
    cancel: str
    demo: str


@dataclass(frozen=True)
class Payment:
    """A confirmed payment for a top-up."""

    checkout_ref: str
    payment_ref: str | None
    amount_fen: int
    currency: str


class PaymentProvider(Protocol):
    """Creates a checkout for a top-up and confirms its payment."""

    name: str
    is_demo: bool

    def create_checkout(self, topup: TopUp, urls: CheckoutUrls, description: str) -> str:
        """Start a checkout; store its reference on the top-up; return the URL to send the resident to."""

    def paid_payment(self, topup: TopUp) -> Payment | None:
        """The confirmed payment for this top-up, or None while it is unpaid."""


class DemoProvider:
    """No real money: a labelled demo page confirms the payment through the same fulfilment."""

    name = "demo"
    is_demo = True

    def create_checkout(self, topup: TopUp, urls: CheckoutUrls, description: str) -> str:
        topup.checkout_ref = f"demo_{topup.id}"
        return urls.demo

    def paid_payment(self, topup: TopUp) -> Payment | None:
        # The demo page itself is the payment; the caller only asks after it was confirmed.
        return Payment(topup.checkout_ref or f"demo_{topup.id}", None, topup.amount_fen, topup.currency)


class StripeProvider:
    """Stripe Checkout through the official SDK's StripeClient."""

    name = "stripe"
    is_demo = False

    def __init__(self, secret_key: str, webhook_secret: str, api_base: str = "", http_client=None):
        self.webhook_secret = webhook_secret
        addresses = {"api": api_base} if api_base else None
        self.client = stripe.StripeClient(secret_key, base_addresses=addresses, http_client=http_client,
                                          max_network_retries=2)

    def create_checkout(self, topup: TopUp, urls: CheckoutUrls, description: str) -> str:
        separator = "&" if "?" in urls.success else "?"
        session = self.client.v1.checkout.sessions.create(
            params={
                "mode": "payment",
                "line_items": [{
                    "quantity": 1,
                    "price_data": {"currency": topup.currency, "unit_amount": topup.amount_fen,
                                   "product_data": {"name": description}},
                }],
                "client_reference_id": str(topup.id),
                "metadata": {"topup_id": str(topup.id)},
                "success_url": urls.success + separator + "session_id={CHECKOUT_SESSION_ID}",
                "cancel_url": urls.cancel,
            },
            options={"idempotency_key": f"topup-{topup.id}-checkout"},
        )
        topup.checkout_ref = session.id
        return session.url

    def paid_payment(self, topup: TopUp) -> Payment | None:
        if not topup.checkout_ref:
            return None
        session = self.client.v1.checkout.sessions.retrieve(topup.checkout_ref)
        return payment_from_checkout(session)

    def parse_event(self, payload: bytes, signature: str | None):
        """Verify the signature over the raw body and return the event (raises on forgery)."""
        return self.client.construct_event(payload, signature, self.webhook_secret)


def payment_from_checkout(session) -> Payment | None:
    """A Payment from a Checkout Session object when it is paid, else None."""
    if getattr(session, "payment_status", None) != "paid":
        return None
    intent = getattr(session, "payment_intent", None)
    payment_ref = intent if isinstance(intent, str) or intent is None else intent.id
    return Payment(session.id, payment_ref, int(session.amount_total), str(session.currency))


def provider_from_config(config) -> PaymentProvider:
    """The configured provider; Stripe only when PAYMENTS=stripe and a secret key is set."""
    if config.get("PAYMENTS") == "stripe" and config.get("STRIPE_SECRET_KEY"):
        return StripeProvider(config["STRIPE_SECRET_KEY"], config.get("STRIPE_WEBHOOK_SECRET", ""),
                              config.get("STRIPE_API_BASE", ""), config.get("STRIPE_HTTP_CLIENT"))
    return DemoProvider()
