"""Payment providers behind one small interface: Stripe Checkout, or the demo stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

import stripe

from chargeshed.payments.models import TopUp

# Bounded waits: a resident pressing "Top up" hears back within seconds even when Stripe hangs.
CONNECT_TIMEOUT_SECONDS = 3.0
READ_TIMEOUT_SECONDS = 6.0
MAX_NETWORK_RETRIES = 1

# Expanding this path on a Checkout Session reaches the exact fee (Stripe allows 4 levels).
FEE_PATH = "payment_intent.latest_charge.balance_transaction"


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


@dataclass(frozen=True)
class Fee:
    """A balance transaction (a payment's, a refund's, a payout's ...): gross `amount`, `fee` and `net`
    in minor units of `currency`, the provider's settlement currency; negative when money leaves.
    When that differs from the currency of what it settles (a CNY payment or refund),
    `exchange_rate` is the provider's rate: that amount x rate = |`amount`|. `ref` is the provider's
    id of the transaction, `type` its kind ("charge", "refund", "refund_failure", "payout",
    "payout_failure", ...), `source` the id of the object it settles."""

    fee: int
    net: int
    currency: str
    amount: int | None = None
    exchange_rate: Decimal | None = None
    ref: str | None = None
    type: str = "charge"
    source: str | None = None


@dataclass(frozen=True)
class Settled:
    """A balance transaction with what it settles: for a refund, the refund's own amount and currency
    (what the payer gets back, in fen for CNY)."""

    txn: Fee
    source_amount: int | None = None
    source_currency: str | None = None
    source_object: str | None = None  # "refund", "dispute", "payout", "charge" ...
    dispute: ProviderRefund | None = None  # the dispute it withdraws or reinstates money for


@dataclass(frozen=True)
class ProviderRefund:
    """A refund as the provider sees it; `refund_id` is our TopUpRefund id from its metadata."""

    ref: str
    status: str
    amount_fen: int
    payment_ref: str | None = None
    refund_id: int | None = None
    failure_reason: str = ""
    topup_id: int | None = None  # from the metadata, when ChargeShed made the refund
    kind: str = "refund"  # or "dispute": money a lost dispute took back
    # The balance transactions that moved the money at the provider: the refund's, and the one
    # that brought it back when the refund failed.
    balance_refs: tuple[str, ...] = ()


class RefundRejected(Exception):
    """The provider refused the refund for good (e.g. too old, already refunded)."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


class PaymentProvider(Protocol):
    """Creates checkouts, confirms payments, reports fees and refunds money."""

    name: str
    is_demo: bool
    settles_refunds_at_once: bool

    def create_checkout(self, topup: TopUp, urls: CheckoutUrls, description: str) -> str:
        """Start a checkout; store its reference on the top-up; return the URL to send the resident to."""

    def paid_payment(self, topup: TopUp) -> Payment | None:
        """The confirmed payment for this top-up, or None while it is unpaid."""

    def fee_for(self, topup: TopUp) -> Fee | None:
        """The exact fee of a paid top-up, or None when there is none (yet)."""

    def refund(self, topup: TopUp, amount_fen: int, *, key: str, metadata: dict[str, str]) -> ProviderRefund:
        """Refund part of a top-up's payment; the same `key` never refunds twice."""


class DemoProvider:
    """No real money: a labelled demo page confirms the payment through the same fulfilment."""

    name = "demo"
    is_demo = True
    settles_refunds_at_once = True

    def create_checkout(self, topup: TopUp, urls: CheckoutUrls, description: str) -> str:
        """The demo checkout is our own labelled page."""
        topup.checkout_ref = f"demo_{topup.id}"
        return urls.demo

    def checkout_state(self, topup: TopUp) -> tuple[Payment | None, str | None]:
        """The demo page itself is the payment."""
        return self.paid_payment(topup), None

    def paid_payment(self, topup: TopUp) -> Payment | None:
        """The demo page itself is the payment; the caller only asks after it was confirmed."""
        return Payment(topup.checkout_ref or f"demo_{topup.id}", None, topup.amount_fen, topup.currency)

    def fee_for(self, topup: TopUp) -> Fee | None:
        """Demo payments cost nothing."""
        return None

    def refund(self, topup: TopUp, amount_fen: int, *, key: str, metadata: dict[str, str]) -> ProviderRefund:
        """A demo refund succeeds at once."""
        refund_id = metadata.get("refund_id", "")
        return ProviderRefund(
            f"demo_{key}", "succeeded", amount_fen, topup.payment_ref, int(refund_id) if refund_id.isdigit() else None
        )


class StripeProvider:
    """Stripe Checkout through the official SDK's StripeClient."""

    name = "stripe"
    is_demo = False
    settles_refunds_at_once = False  # refunds complete on the webhook (or the reconcile job)

    def __init__(
        self,
        secret_key: str,
        webhook_secret: str,
        api_base: str = "",
        http_client=None,
        *,
        timeout: tuple[float, float] = (CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS),
        max_network_retries: int = MAX_NETWORK_RETRIES,
    ):
        self.webhook_secret = webhook_secret
        addresses = {"api": api_base} if api_base else None
        # The SDK's default waits 80 s a try: always bound connect and read.
        http_client = http_client or stripe.RequestsClient(timeout=timeout)
        self.client = stripe.StripeClient(
            secret_key, base_addresses=addresses, http_client=http_client, max_network_retries=max_network_retries
        )

    def create_checkout(self, topup: TopUp, urls: CheckoutUrls, description: str) -> str:
        """A Checkout Session for the top-up; Stripe offers the methods (card, Alipay, WeChat Pay)
        enabled in the dashboard (no payment_method_types: the account's defaults apply).

        Idempotent by the top-up's random `checkout_key`. Call it outside any DB transaction.
        """
        separator = "&" if "?" in urls.success else "?"
        reference = {"topup_id": str(topup.id)}
        session = self.client.v1.checkout.sessions.create(
            params={
                "mode": "payment",
                "line_items": [
                    {
                        "quantity": 1,
                        "price_data": {
                            "currency": topup.currency,
                            "unit_amount": topup.amount_fen,
                            "product_data": {"name": description},
                        },
                    }
                ],
                "client_reference_id": str(topup.id),
                "metadata": reference,
                # Charges and refunds carry the top-up too, for the dashboard and reconciliation.
                "payment_intent_data": {"metadata": reference},
                "success_url": urls.success + separator + "session_id={CHECKOUT_SESSION_ID}",
                "cancel_url": urls.cancel,
            },
            options={"idempotency_key": topup.checkout_key or f"topup-{topup.id}-checkout"},
        )
        topup.checkout_ref = session.id
        return session.url

    def paid_payment(self, topup: TopUp) -> Payment | None:
        """Ask Stripe whether the top-up's Checkout Session is paid."""
        if not topup.checkout_ref:
            return None
        session = self.client.v1.checkout.sessions.retrieve(topup.checkout_ref)
        return payment_from_checkout(session)

    def checkout_state(self, topup: TopUp) -> tuple[Payment | None, str | None]:
        """(the payment, None) once paid; (None, "expired" or "failed") when it never will be;
        (None, None) while the resident may still pay or the payment is processing."""
        if not topup.checkout_ref:
            return None, None
        session = self.client.v1.checkout.sessions.retrieve(topup.checkout_ref, params={"expand": ["payment_intent"]})
        payment = payment_from_checkout(session)
        return payment, (None if payment else unpaid_outcome(session))

    def fee_for(self, topup: TopUp) -> Fee | None:
        """The fee from the payment's balance transaction (None until Stripe has booked it)."""
        if not topup.checkout_ref:
            return None
        session = self.client.v1.checkout.sessions.retrieve(topup.checkout_ref, params={"expand": [FEE_PATH]})
        return fee_from_checkout(session)

    def refund(self, topup: TopUp, amount_fen: int, *, key: str, metadata: dict[str, str]) -> ProviderRefund:
        """A (partial) refund of the top-up's PaymentIntent, idempotent by `key`."""
        if not topup.payment_ref:
            raise RefundRejected("no_payment")
        try:
            refund = self.client.v1.refunds.create(
                params={
                    "payment_intent": topup.payment_ref,
                    "amount": amount_fen,
                    "metadata": metadata,
                    "reason": "requested_by_customer",
                },
                options={"idempotency_key": key},
            )
        except stripe.IdempotencyError:
            raise  # the same key with other parameters: a bug, not a refusal
        except stripe.InvalidRequestError as exc:
            raise RefundRejected(exc.code or "invalid_request") from exc
        return refund_from_stripe(refund)

    def refunds_for_payment(self, payment_ref: str) -> list[ProviderRefund]:
        """Every refund of a PaymentIntent (Stripe lists refunds by payment_intent or charge; there is
        no search by metadata, so ours are picked out by their metadata here)."""
        page = self.client.v1.refunds.list(params={"payment_intent": payment_ref, "limit": 100})
        return [refund_from_stripe(r) for r in page.auto_paging_iter()]

    def find_refund(self, payment_ref: str, refund_id: int) -> ProviderRefund | None:
        """Our refund `refund_id` at Stripe, found by its metadata, or None when Stripe has none."""
        found = [r for r in self.refunds_for_payment(payment_ref) if r.refund_id == refund_id]
        return found[0] if found else None

    def topup_id_for_payment(self, payment_ref: str) -> int | None:
        """The top-up a PaymentIntent pays for, from its metadata."""
        intent = self.client.v1.payment_intents.retrieve(payment_ref)
        return _int_or_none(field(field(intent, "metadata"), "topup_id"))

    def refund_by_ref(self, ref: str) -> ProviderRefund:
        """The current state of one refund."""
        return refund_from_stripe(self.client.v1.refunds.retrieve(ref))

    def refunds_for_charge(self, charge_id: str) -> list[ProviderRefund]:
        """Every refund of a charge (charge.refunded events do not list them)."""
        page = self.client.v1.refunds.list(params={"charge": charge_id, "limit": 100})
        return [refund_from_stripe(r) for r in page.auto_paging_iter()]

    def refunds_since(self, since: int) -> Iterator[ProviderRefund]:
        """Refunds created since a unix time, newest first."""
        page = self.client.v1.refunds.list(params={"created": {"gte": since}, "limit": 100})
        return (refund_from_stripe(r) for r in page.auto_paging_iter())

    def balance_transaction(self, ref: str) -> Settled:
        """One balance transaction, with the object it settles."""
        return settled_from_stripe(self.client.v1.balance_transactions.retrieve(ref, params={"expand": ["source"]}))

    def balance_transactions_since(self, since: int) -> Iterator[Settled]:
        """Every balance transaction created since a unix time, newest first, with its source."""
        page = self.client.v1.balance_transactions.list(
            params={"created": {"gte": since}, "limit": 100, "expand": ["data.source"]}
        )
        return (settled_from_stripe(t) for t in page.auto_paging_iter())

    def balance(self) -> dict[str, int]:
        """What the provider holds for us per settlement currency (available and pending), in minor
        units: the sum of all its balance transactions."""
        balance = self.client.v1.balance.retrieve()
        totals: dict[str, int] = {}
        for part in ("available", "pending"):
            for item in field(balance, part, []):
                currency = str(item["currency"]).lower()
                totals[currency] = totals.get(currency, 0) + int(item["amount"])
        return totals

    def checkouts_since(self, since: int) -> Iterator:
        """Checkout Sessions created since a unix time, newest first, with their fees expanded."""
        page = self.client.v1.checkout.sessions.list(
            params={"created": {"gte": since}, "limit": 100, "expand": ["data." + FEE_PATH]}
        )
        return page.auto_paging_iter()

    def parse_event(self, payload: bytes, signature: str | None):
        """Verify the signature over the raw body (300 s tolerance) and return the event.

        Raises stripe.SignatureVerificationError on a forged or stale delivery and
        ValueError on a body that is not a well-formed event.
        """
        try:
            event = self.client.construct_event(payload, signature, self.webhook_secret)
        except (TypeError, AttributeError, KeyError) as exc:
            raise ValueError("not an event") from exc
        data = getattr(event, "data", None) if isinstance(event, stripe.StripeObject) else None
        well_formed = (
            isinstance(getattr(event, "type", None), str)
            and isinstance(getattr(event, "id", None), str)
            and isinstance(getattr(data, "object", None), stripe.StripeObject)
        )
        if not well_formed:
            raise ValueError("not an event")
        return event


def field(obj, key: str, default=None):
    """A field of a StripeObject (not a dict: it has no .get) or a plain dict; `default` when absent."""
    if obj is None or isinstance(obj, str):
        return default
    try:
        value = obj[key]
    except (KeyError, TypeError, IndexError):
        return default
    return default if value is None else value


def _int_or_none(value) -> int | None:
    text = str(value) if value is not None else ""
    return int(text) if text.isdigit() else None


def object_id(value) -> str | None:
    """An expandable field's id, whether Stripe sent the id or the object."""
    return value if isinstance(value, str) or value is None else field(value, "id")


def payment_from_checkout(session) -> Payment | None:
    """A Payment from a Checkout Session object when it is paid, else None."""
    if getattr(session, "payment_status", None) != "paid":
        return None
    return Payment(
        session.id,
        object_id(getattr(session, "payment_intent", None)),
        int(session.amount_total),
        str(session.currency),
    )


def unpaid_outcome(session) -> str | None:
    """ "expired" for an expired Checkout Session, "failed" for a completed one whose (async) payment
    failed for good (its PaymentIntent, when expanded, wants a new payment method or was cancelled)."""
    if field(session, "status") == "expired":
        return "expired"
    intent = field(session, "payment_intent")
    if field(session, "status") == "complete" and field(intent, "status") in ("requires_payment_method", "canceled"):
        return "failed"
    return None


def fee_from_checkout(session) -> Fee | None:
    """The fee of a Checkout Session whose payment_intent.latest_charge.balance_transaction is expanded."""
    intent = getattr(session, "payment_intent", None)
    charge = getattr(intent, "latest_charge", None) if not isinstance(intent, str) else None
    txn = getattr(charge, "balance_transaction", None) if not isinstance(charge, str) else None
    if txn is None or isinstance(txn, str):
        return None
    return fee_from_balance_transaction(txn)


def fee_from_balance_transaction(txn) -> Fee:
    """A Fee from a BalanceTransaction; the rate is kept exactly as Stripe wrote it."""
    rate = field(txn, "exchange_rate")
    return Fee(
        int(txn["fee"]),
        int(txn["net"]),
        str(txn["currency"]).lower(),
        amount=int(txn["amount"]) if field(txn, "amount") is not None else None,
        exchange_rate=Decimal(repr(rate))
        if isinstance(rate, float)
        else (Decimal(str(rate)) if rate is not None else None),
        ref=field(txn, "id"),
        type=str(field(txn, "type", "charge")),
        source=object_id(field(txn, "source")),
    )


def settled_from_stripe(txn) -> Settled:
    """A balance transaction whose `source` may be expanded (then its amount and currency are read)."""
    source = field(txn, "source")
    expanded = source is not None and not isinstance(source, str)
    source_object = str(field(source, "object")) if expanded and field(source, "object") else None
    return Settled(
        fee_from_balance_transaction(txn),
        source_amount=_int_or_none(field(source, "amount")) if expanded else None,
        source_currency=str(field(source, "currency")).lower() if expanded and field(source, "currency") else None,
        source_object=source_object,
        dispute=refund_from_dispute(source) if source_object == "dispute" else None,
    )


def refund_from_stripe(refund) -> ProviderRefund:
    """Our view of a Stripe Refund object (a StripeObject: fields are read by key, never .get)."""
    metadata = field(refund, "metadata")
    return ProviderRefund(
        ref=refund["id"],
        status=str(refund["status"]),
        amount_fen=int(refund["amount"]),
        payment_ref=object_id(field(refund, "payment_intent")),
        refund_id=_int_or_none(field(metadata, "refund_id")),
        failure_reason=str(field(refund, "failure_reason", "")),
        topup_id=_int_or_none(field(metadata, "topup_id")),
        balance_refs=tuple(
            ref
            for ref in (
                object_id(field(refund, "balance_transaction")),
                object_id(field(refund, "failure_balance_transaction")),
            )
            if ref
        ),
    )


def refund_from_dispute(dispute) -> ProviderRefund:
    """A dispute whose funds were withdrawn, seen as money returned to the payer."""
    return ProviderRefund(
        ref=dispute["id"],
        status="succeeded",
        amount_fen=int(dispute["amount"]),
        payment_ref=object_id(field(dispute, "payment_intent")),
        kind="dispute",
        balance_refs=tuple(ref for ref in (object_id(t) for t in field(dispute, "balance_transactions", [])) if ref),
    )


def provider_from_config(config) -> PaymentProvider:
    """The configured provider; Stripe only when PAYMENTS=stripe and a secret key is set."""
    if config.get("PAYMENTS") == "stripe" and config.get("STRIPE_SECRET_KEY"):
        return StripeProvider(
            config["STRIPE_SECRET_KEY"],
            config.get("STRIPE_WEBHOOK_SECRET", ""),
            config.get("STRIPE_API_BASE", ""),
            config.get("STRIPE_HTTP_CLIENT"),
            timeout=(
                float(config.get("STRIPE_CONNECT_TIMEOUT_SECONDS", CONNECT_TIMEOUT_SECONDS)),
                float(config.get("STRIPE_READ_TIMEOUT_SECONDS", READ_TIMEOUT_SECONDS)),
            ),
            max_network_retries=int(config.get("STRIPE_MAX_NETWORK_RETRIES", MAX_NETWORK_RETRIES)),
        )
    return DemoProvider()
