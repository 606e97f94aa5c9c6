"""A small in-memory fake of the Stripe HTTP API for tests.

``FakeStripe`` serves a subset of the v1 API with werkzeug on 127.0.0.1 (a free
port, background thread) so the *real* SDK can talk to it::

    with FakeStripe() as fake:
        client = stripe.StripeClient("sk_test_x", base_addresses={"api": fake.url})
        session = client.v1.checkout.sessions.create(params={...})
        event = fake.complete_checkout(session.id)
        body = fake.event_payload(event)
        headers = signed_headers(body, "whsec_test")

Money is always integer minor units. Test-control methods (``complete_checkout``
etc.) are plain Python calls; they mutate state and return the recorded Event.

Behaviour of the real API that the fake keeps:
- idempotency keys are remembered for 24 h only (``advance`` moves the fake's clock);
- a response can be lost after the work is done (``lose_responses``) and the API can hang
  (``hang``): the client sees a read timeout;
- refunds made in the dashboard (``dashboard_refund``) carry no metadata; disputes
  (``lose_dispute``) take money back with ``charge.dispute.funds_withdrawn``, and one won later
  (``win_dispute``) puts it back with ``charge.dispute.funds_reinstated``;
- an account settles in its own currency (``settlement_currency``/``exchange_rates``): the
  balance transaction then has ``amount``, ``fee``, ``net`` in that currency and ``exchange_rate``;
- refunds are listed by ``payment_intent``/``charge``/``created`` only: the API has no refund
  search and no metadata filter;
- every movement of the account's balance is a balance transaction (a charge's, a refund's, a
  refund failure's, a payout's, a payout failure's, an adjustment's) in the settlement currency at
  the rate of its own moment; ``/v1/balance`` is their sum (available and pending);
- payouts (``payout``) take money from the balance to the bank at once and end ``paid``
  (``pay_payout``) or ``failed`` (``fail_payout``: the money comes back); a refund can fail later
  (``fail_refund``: the money comes back to the balance).
"""

from __future__ import annotations

import copy
import fnmatch
import html
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import stripe
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

API_VERSION = stripe.api_version
_MIN_CHARGE = {"usd": 50, "eur": 50, "gbp": 30, "jpy": 50}  # default 50
_AUTH_RE = re.compile(r"^Bearer ((?:sk|rk)_test_\S+)$")
_INT_RE = re.compile(r"^-?\d+$")
IDEMPOTENCY_TTL_SECONDS = 24 * 3600


def default_fee(amount: int) -> int:
    """Stripe-like processing fee: round-half-up of 2.9% of ``amount`` plus 30 (minor units)."""
    return (amount * 29 + 500) // 1000 + 30


def signed_headers(payload: bytes, secret: str, timestamp: int | None = None) -> dict:
    """Headers (incl. ``Stripe-Signature``) for POSTing ``payload`` to a webhook signed with ``secret``."""
    sig = stripe.WebhookSignature.generate_signature_header(payload.decode("utf-8"), secret, timestamp=timestamp)
    return {"Stripe-Signature": sig, "Content-Type": "application/json"}


class _StripeError(Exception):
    def __init__(self, status: int, message: str, *, code=None, param=None, type: str = "invalid_request_error"):
        super().__init__(message)
        err = {"type": type, "message": message}
        err.update({k: v for k, v in (("code", code), ("param", param)) if v})
        self.status, self.body = status, {"error": err}


def _bad(message: str, **kw) -> _StripeError:
    return _StripeError(400, message, **kw)


def _name(prefix: str, key: str) -> str:
    return f"{prefix}[{key}]" if prefix else key


def _parse_form(pairs: Iterable[tuple[str, str]]) -> dict:
    """Turn Stripe form keys (``a[0][b]``, ``expand[]``) into nested dicts/lists."""
    root: dict = {}
    for key, value in pairs:
        path = [key.split("[", 1)[0], *re.findall(r"\[([^\]]*)\]", key)]
        node = root
        for i, part in enumerate(path):
            part = part or str(len(node))
            if i == len(path) - 1:
                node[part] = value
            else:
                if not isinstance(node.get(part), dict):
                    node[part] = {}
                node = node[part]

    def listify(v):
        if not isinstance(v, dict):
            return v
        v = {k: listify(x) for k, x in v.items()}
        if v and all(k.isdigit() for k in v):
            return [v[k] for k in sorted(v, key=int)]
        return v

    return listify(root)


def _check_keys(params: Any, allowed: set, prefix: str = "") -> dict:
    if not isinstance(params, dict):
        raise _bad(f"Invalid object: {prefix}", param=prefix)
    for key in params:
        if key not in allowed:
            raise _bad(
                f"Received unknown parameter: {_name(prefix, key)}",
                code="parameter_unknown",
                param=_name(prefix, key),
            )
    return params


def _require(params: dict, key: str, prefix: str = "") -> Any:
    if params.get(key) in (None, ""):
        raise _bad(
            f"Missing required param: {_name(prefix, key)}.",
            code="parameter_missing",
            param=_name(prefix, key),
        )
    return params[key]


def _int(value: Any, param: str, lo: int | None = None, hi: int | None = None) -> int:
    if not isinstance(value, str) or not _INT_RE.match(value):
        raise _bad(f"Invalid integer: {value}", code="parameter_invalid_integer", param=param)
    n = int(value)
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        bounds = " and ".join(t for t in (lo is not None and f">= {lo}", hi is not None and f"<= {hi}") if t)
        raise _bad(f"Invalid {param}: must be {bounds}", code="parameter_invalid_integer", param=param)
    return n


def _metadata(value: Any, param: str = "metadata") -> dict:
    if value == "":
        return {}
    if not isinstance(value, dict) or len(value) > 50:
        raise _bad("Invalid metadata: must be a hash of at most 50 keys", param=param)
    for k, v in value.items():
        if not isinstance(v, str) or len(k) > 40 or len(v) > 500:
            raise _bad(f"Invalid metadata value for {k!r}", param=f"{param}[{k}]")
    return dict(value)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:  # keep test output clean
        pass


class FakeStripe:
    """In-memory fake Stripe API server (checkout sessions, payment intents, charges,
    balance transactions, refunds, events). All state is guarded by ``self.lock``."""

    _routes = Map(
        [
            Rule("/v1/checkout/sessions", methods=["POST"], endpoint="create_session"),
            Rule("/v1/checkout/sessions", methods=["GET"], endpoint="list_sessions"),
            Rule(
                "/v1/checkout/sessions/<id>",
                methods=["GET"],
                endpoint="retrieve",
                defaults={"kind": "checkout.session"},
            ),
            Rule(
                "/v1/payment_intents/<id>",
                methods=["GET"],
                endpoint="retrieve",
                defaults={"kind": "payment_intent"},
            ),
            Rule("/v1/charges/<id>", methods=["GET"], endpoint="retrieve", defaults={"kind": "charge"}),
            Rule(
                "/v1/balance_transactions/<id>",
                methods=["GET"],
                endpoint="retrieve",
                defaults={"kind": "balance_transaction"},
            ),
            Rule("/v1/refunds", methods=["POST"], endpoint="create_refund"),
            Rule("/v1/refunds", methods=["GET"], endpoint="list_refunds"),
            Rule("/v1/refunds/<id>", methods=["GET"], endpoint="retrieve", defaults={"kind": "refund"}),
            Rule("/v1/balance", methods=["GET"], endpoint="balance"),
            Rule("/v1/balance_transactions", methods=["GET"], endpoint="list_balance_transactions"),
            Rule("/v1/payouts", methods=["GET"], endpoint="list_payouts"),
            Rule("/v1/payouts/<id>", methods=["GET"], endpoint="retrieve", defaults={"kind": "payout"}),
            Rule("/v1/events", methods=["GET"], endpoint="list_events"),
            Rule("/v1/events/<id>", methods=["GET"], endpoint="retrieve", defaults={"kind": "event"}),
        ]
    )

    def __init__(
        self,
        api_key: str | None = None,
        *,
        host: str = "127.0.0.1",
        clock: Callable[[], int] | None = None,
        settlement_currency: str | None = None,
        exchange_rates: dict[str, float] | None = None,
    ):
        """``api_key``: if given, only that key is accepted (else any ``sk_test_``/``rk_test_``
        key). ``clock``: returns unix seconds, for deterministic ``created`` values.
        ``settlement_currency``: the account's currency (default: each charge's own);
        ``exchange_rates``: charge currency -> rate into it (amount x rate = settled amount)."""
        self.api_key, self.host = api_key, host
        base_clock = clock or (lambda: int(time.time()))
        self._offset = 0
        self.clock = lambda: base_clock() + self._offset
        self.settlement_currency = settlement_currency
        self.exchange_rates = dict(exchange_rates or {})
        self._lose: list[list] = []  # [path prefix, count] responses to lose after the work is done
        self._hang: list[list] = []  # [path prefix, count] requests that hang before any work
        self._released = threading.Event()
        self.request_hooks: list[Callable[[str, str], None]] = []  # called (method, path) per API call
        self.url: str | None = None
        self.lock = threading.RLock()
        self.requests: list[dict] = []  # {"method", "path", "params"} per API call
        self._objects: dict[str, dict] = {}  # every object by id, in creation order
        self._private: dict[str, dict] = {}  # per-session data not exposed by the API
        self._idempotency: dict[tuple, tuple] = {}
        self._fail_next_refund = False
        self._request_ctx: dict = {"id": None, "idempotency_key": None}
        self._server = self._thread = None

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> FakeStripe:
        """Start serving on a free loopback port; sets ``self.url``. Idempotent."""
        if self._server is None:
            self._server = make_server(self.host, 0, self._wsgi, threaded=True, request_handler=_QuietHandler)
            self.url = f"http://{self.host}:{self._server.server_port}"
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name="fake-stripe", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the server thread (state is kept)."""
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------ test controls
    def complete_checkout(self, session_id: str, *, fee: int | None = None, async_payment: bool = False) -> dict:
        """Customer finishes Checkout. Pays immediately (status complete / paid, with
        PaymentIntent, Charge and BalanceTransaction) or, if ``async_payment``, leaves it
        complete / unpaid until ``succeed_async_payment``. Returns the
        ``checkout.session.completed`` event."""
        with self.lock:
            s = self._get(session_id, "checkout.session")
            if s["status"] != "open":
                raise ValueError(f"{session_id} is {s['status']}, not open")
            if fee is not None and (type(fee) is not int or not 0 <= fee <= s["amount_total"]):
                raise ValueError("fee must be an int between 0 and amount_total")
            pdata = self._private[session_id]
            pi = self._store(
                "pi",
                {
                    "object": "payment_intent",
                    "amount": s["amount_total"],
                    "amount_received": 0,
                    "currency": s["currency"],
                    "status": "processing",
                    "latest_charge": None,
                    "description": pdata["pi_data"].get("description"),
                    "metadata": pdata["pi_data"].get("metadata", {}),
                    "livemode": False,
                },
            )
            pdata["fee"] = fee
            s.update(
                status="complete",
                url=None,
                payment_intent=pi["id"],
                customer_details={"email": s["customer_email"]},
            )
            if not async_payment:
                self._pay(s)
            return self._event("checkout.session.completed", s)

    def succeed_async_payment(self, session_id: str) -> dict:
        """Settle an async payment; returns ``checkout.session.async_payment_succeeded``."""
        with self.lock:
            s = self._completed_unpaid(session_id)
            self._pay(s)
            return self._event("checkout.session.async_payment_succeeded", s)

    def fail_async_payment(self, session_id: str) -> dict:
        """Fail an async payment; returns ``checkout.session.async_payment_failed``."""
        with self.lock:
            s = self._completed_unpaid(session_id)
            self._objects[s["payment_intent"]]["status"] = "requires_payment_method"
            return self._event("checkout.session.async_payment_failed", s)

    def expire_checkout(self, session_id: str) -> dict:
        """Expire an open session; returns ``checkout.session.expired``."""
        with self.lock:
            s = self._get(session_id, "checkout.session")
            if s["status"] != "open":
                raise ValueError(f"{session_id} is {s['status']}, not open")
            s.update(status="expired", url=None)
            return self._event("checkout.session.expired", s)

    def advance(self, seconds: int) -> None:
        """Move the fake's clock forward (idempotency keys older than 24 h are forgotten)."""
        with self.lock:
            self._offset += int(seconds)

    def lose_responses(self, path: str, count: int = 1, method: str | None = None) -> None:
        """The next ``count`` requests to ``path`` (a prefix; only ``method`` when given) are carried
        out, but their responses never arrive: the client waits until its read timeout."""
        with self.lock:
            self._released.clear()
            self._lose.append([path, count, method])

    def hang(self, path: str = "/v1/", count: int = 1_000_000, method: str | None = None) -> None:
        """The next ``count`` requests to ``path`` (a prefix; only ``method`` when given) hang before
        doing anything (until ``release``)."""
        with self.lock:
            self._released.clear()
            self._hang.append([path, count, method])

    def release(self) -> None:
        """Stop hanging and let held requests go (they then answer normally)."""
        with self.lock:
            self._hang.clear()
            self._lose.clear()
        self._released.set()

    def _take(self, rules: list[list], method: str, path: str) -> bool:
        for rule in rules:
            if path.startswith(rule[0]) and rule[1] > 0 and rule[2] in (None, method):
                rule[1] -= 1
                return True
        return False

    def dashboard_refund(self, payment_intent: str, amount: int | None = None) -> dict:
        """Staff refund a payment from the Stripe dashboard: no metadata, events as for any refund.
        Returns the refund."""
        with self.lock:
            params = {"payment_intent": payment_intent}
            if amount is not None:
                params["amount"] = str(amount)
            return copy.deepcopy(self._ep_create_refund(params))

    def lose_dispute(self, payment_intent: str, amount: int | None = None, fee: int = 1500) -> dict:
        """The payer disputes the payment: Stripe withdraws the money and its dispute ``fee`` at once
        (an ``adjustment`` balance transaction in the settlement currency, listed on the dispute;
        event ``charge.dispute.funds_withdrawn``), before anyone answers it. Returns that event."""
        with self.lock:
            pi = self._get(payment_intent, "payment_intent")
            ch = self._objects[pi["latest_charge"]]
            amount = ch["amount"] - ch["amount_refunded"] if amount is None else amount
            dispute = self._store(
                "dp",
                {
                    "object": "dispute",
                    "amount": amount,
                    "charge": ch["id"],
                    "currency": ch["currency"],
                    "payment_intent": pi["id"],
                    "reason": "fraudulent",
                    "status": "needs_response",
                    "balance_transactions": [],
                },
            )
            txn = self._balance_txn(-amount, ch["currency"], "adjustment", dispute["id"])
            txn.update(
                fee=fee,
                net=txn["amount"] - fee,
                fee_details=[{"amount": fee, "currency": txn["currency"], "type": "stripe_fee"}],
            )
            dispute["balance_transactions"] = [copy.deepcopy(txn)]
            return self._event("charge.dispute.funds_withdrawn", dispute)

    def win_dispute(self, dispute_id: str, fee_returned: int = 0) -> dict:
        """The operator wins a dispute after all: Stripe puts the withdrawn money back at the rate of the
        moment, and ``fee_returned`` of the dispute fee (a negative fee on the reinstating ``adjustment``;
        whether the fee comes back depends on the account's country). The dispute lists both balance
        transactions; event ``charge.dispute.funds_reinstated``. Returns that event."""
        with self.lock:
            dispute = self._get(dispute_id, "dispute")
            txn = self._balance_txn(dispute["amount"], dispute["currency"], "adjustment", dispute["id"])
            txn.update(
                fee=-fee_returned,
                net=txn["amount"] + fee_returned,
                fee_details=[{"amount": -fee_returned, "currency": txn["currency"], "type": "stripe_fee"}]
                if fee_returned
                else [],
            )
            dispute["status"] = "won"
            dispute["balance_transactions"].append(copy.deepcopy(txn))
            return self._event("charge.dispute.funds_reinstated", dispute)

    def fail_refund(self, refund_id: str, reason: str = "expired_or_canceled_card") -> dict:
        """A refund (e.g. one made in the dashboard) fails after it was made: the money comes back to
        the balance through a ``refund_failure`` balance transaction (at the rate of the moment).
        Events ``refund.failed``, ``refund.updated`` and ``charge.refund.updated``. Returns the refund."""
        with self.lock:
            refund = self._get(refund_id, "refund")
            if refund["status"] not in ("pending", "succeeded"):
                raise ValueError(f"{refund_id} is {refund['status']}")
            previous = refund["status"]
            ch = self._objects[refund["charge"]]
            ftxn = self._balance_txn(refund["amount"], ch["currency"], "refund_failure", refund["id"])
            refund.update(status="failed", failure_reason=reason, failure_balance_transaction=ftxn["id"])
            ch["amount_refunded"] -= refund["amount"]
            ch["refunded"] = False
            self._event("refund.failed", refund)
            self._event("refund.updated", refund, previous={"status": previous})
            self._event("charge.refund.updated", refund, previous={"status": previous})
            return copy.deepcopy(refund)

    def payout(self, amount: int | None = None, currency: str | None = None) -> dict:
        """Stripe pays money out to the bank (all of the balance by default): a ``payout`` balance
        transaction takes it off the balance at once; the payout is ``pending`` until ``pay_payout`` or
        ``fail_payout``. Returns the ``payout.created`` event."""
        with self.lock:
            currency = currency or self.settlement_currency or "cny"
            amount = self._balance_of(currency) if amount is None else amount
            if amount <= 0:
                raise ValueError("nothing to pay out")
            payout = self._store(
                "po",
                {
                    "object": "payout",
                    "amount": amount,
                    "currency": currency,
                    "arrival_date": self.clock() + 86400,
                    "automatic": True,
                    "balance_transaction": None,
                    "failure_balance_transaction": None,
                    "failure_code": None,
                    "method": "standard",
                    "status": "pending",
                    "type": "bank_account",
                },
            )
            txn = self._balance_txn(-amount, currency, "payout", payout["id"], convert=False)
            payout["balance_transaction"] = txn["id"]
            return self._event("payout.created", payout)

    def pay_payout(self, payout_id: str) -> dict:
        """The bank received the payout; returns ``payout.paid``."""
        with self.lock:
            payout = self._get(payout_id, "payout")
            payout["status"] = "paid"
            return self._event("payout.paid", payout)

    def fail_payout(self, payout_id: str, code: str = "account_closed") -> dict:
        """The bank refused the payout: the money comes back to the balance (``payout_failure``).
        Returns ``payout.failed``."""
        with self.lock:
            payout = self._get(payout_id, "payout")
            txn = self._balance_txn(payout["amount"], payout["currency"], "payout_failure", payout_id, convert=False)
            payout.update(status="failed", failure_code=code, failure_balance_transaction=txn["id"])
            return self._event("payout.failed", payout)

    def adjustment(self, amount: int, currency: str | None = None) -> dict:
        """Stripe adjusts the balance by itself (e.g. a correction): a balance transaction no
        payment, refund or payout explains. Returns it."""
        with self.lock:
            currency = currency or self.settlement_currency or "cny"
            return copy.deepcopy(self._balance_txn(amount, currency, "adjustment", None, convert=False))

    def balance(self, currency: str) -> int:
        """The account's balance in ``currency`` (available and pending): the sum of its balance
        transactions' net amounts."""
        with self.lock:
            return self._balance_of(currency)

    def _balance_of(self, currency: str) -> int:
        return sum(
            o["net"]
            for o in self._objects.values()
            if o["object"] == "balance_transaction" and o["currency"] == currency
        )

    def _balance_txn(self, amount: int, currency: str, type: str, source: str | None, *, convert: bool = True) -> dict:
        """A fee-less balance transaction for ``amount`` (signed) in ``currency``, settled in the
        account's currency at the rate of the moment when ``convert``."""
        settled, settle_cur, rate = self._settled(abs(amount), currency) if convert else (abs(amount), currency, None)
        settled = settled if amount >= 0 else -settled
        txn = self._store(
            "txn",
            {
                "object": "balance_transaction",
                "amount": settled,
                "exchange_rate": rate,
                "fee": 0,
                "net": settled,
                "currency": settle_cur,
                "type": type,
                "status": "pending",
                "fee_details": [],
                "source": source,
            },
        )
        txn["available_on"] = txn["created"]
        return txn

    def _settled(self, amount: int, currency: str) -> tuple[int, str, float | None]:
        """An amount in the account's settlement currency: (amount, currency, exchange rate)."""
        target = self.settlement_currency
        if not target or target == currency:
            return amount, currency, None
        rate = self.exchange_rates[currency]
        return int(round(amount * rate)), target, rate

    def fail_next_refund(self) -> None:
        """The next created refund is returned as ``pending`` and then ends ``failed``
        (events ``refund.created``, ``refund.failed``, ``refund.updated``)."""
        with self.lock:
            self._fail_next_refund = True

    def events(self, type: str | None = None) -> list[dict]:
        """Recorded events, oldest first, optionally filtered by type (``*`` wildcards ok)."""
        with self.lock:
            return [
                copy.deepcopy(o)
                for o in self._objects.values()
                if o["object"] == "event" and (type is None or fnmatch.fnmatchcase(o["type"], type))
            ]

    def get(self, object_id: str) -> dict:
        """A copy of any stored object by id (KeyError if unknown)."""
        with self.lock:
            return copy.deepcopy(self._objects[object_id])

    def event_payload(self, event: dict | str) -> bytes:
        """The JSON body Stripe would POST to a webhook endpoint for ``event`` (dict or id)."""
        if isinstance(event, str):
            event = self.get(event)
        return json.dumps(event, indent=2).encode("utf-8")

    signed_headers = staticmethod(signed_headers)

    # ------------------------------------------------------------ state helpers
    def _store(self, prefix: str, obj: dict) -> dict:
        obj = {"id": f"{prefix}_{uuid.uuid4().hex[:24]}", **obj}
        obj.setdefault("created", self.clock())
        self._objects[obj["id"]] = obj
        return obj

    def _get(self, obj_id: str, kind: str, *, status: int = 404, param: str = "id") -> dict:
        obj = self._objects.get(obj_id) if isinstance(obj_id, str) else None
        if obj is None or obj["object"] != kind:
            raise _StripeError(status, f"No such {kind}: '{obj_id}'", code="resource_missing", param=param)
        return obj

    def _event(self, type: str, obj: dict, previous: dict | None = None) -> dict:
        data = {"object": copy.deepcopy(obj)}
        if previous:
            data["previous_attributes"] = previous
        ev = self._store(
            "evt",
            {
                "object": "event",
                "api_version": API_VERSION,
                "data": data,
                "livemode": False,
                "pending_webhooks": 1,
                "request": dict(self._request_ctx),
                "type": type,
            },
        )
        return copy.deepcopy(ev)

    def _completed_unpaid(self, session_id: str) -> dict:
        s = self._get(session_id, "checkout.session")
        pi = self._objects.get(s["payment_intent"] or "")
        if s["status"] != "complete" or not pi or pi["status"] != "processing":
            raise ValueError(f"{session_id} has no pending async payment")
        return s

    def _pay(self, s: dict) -> None:
        pi = self._objects[s["payment_intent"]]
        amount, cur = pi["amount"], pi["currency"]
        settled, settle_cur, rate = self._settled(amount, cur)
        fee = self._private[s["id"]]["fee"]
        fee = default_fee(settled) if fee is None else fee
        txn = self._store(
            "txn",
            {
                "object": "balance_transaction",
                "amount": settled,
                "exchange_rate": rate,
                "fee": fee,
                "net": settled - fee,
                "currency": settle_cur,
                "type": "charge",
                "status": "pending",
                "source": None,
                "fee_details": [
                    {
                        "amount": fee,
                        "currency": settle_cur,
                        "type": "stripe_fee",
                        "description": "Stripe processing fees",
                        "application": None,
                    }
                ],
            },
        )
        txn["available_on"] = txn["created"] + 2 * 86400
        ch = self._store(
            "ch",
            {
                "object": "charge",
                "amount": amount,
                "amount_captured": amount,
                "amount_refunded": 0,
                "currency": cur,
                "captured": True,
                "paid": True,
                "refunded": False,
                "status": "succeeded",
                "payment_intent": pi["id"],
                "balance_transaction": txn["id"],
                "metadata": dict(pi["metadata"]),
                "livemode": False,
            },
        )
        txn["source"] = ch["id"]
        pi.update(status="succeeded", amount_received=amount, latest_charge=ch["id"])
        s["payment_status"] = "paid"

    def _expand(self, obj: Any, path: str, full: str) -> None:
        head, _, rest = path.partition(".")
        if isinstance(obj, dict) and obj.get("object") == "list" and head == "data" and rest:
            for item in obj["data"]:
                self._expand(item, rest, full)
            return
        if not isinstance(obj, dict) or head not in obj:
            raise _bad(f"This property cannot be expanded ({full}).", param="expand")
        val = obj[head]
        if isinstance(val, str) and val in self._objects:
            val = obj[head] = copy.deepcopy(self._objects[val])
        elif not (val is None or isinstance(val, dict) and "object" in val):
            raise _bad(f"This property cannot be expanded ({full}).", param="expand")
        if val is not None and rest:
            self._expand(val, rest, full)

    # ---------------------------------------------------------------- endpoints
    def _ep_retrieve(self, p: dict, kind: str, id: str) -> dict:
        _check_keys(p, set())
        return self._get(id, kind)

    def _ep_create_session(self, p: dict) -> dict:
        _check_keys(
            p,
            {
                "mode",
                "line_items",
                "success_url",
                "cancel_url",
                "client_reference_id",
                "metadata",
                "customer_email",
                "expires_at",
                "payment_intent_data",
                "locale",
            },
        )
        if _require(p, "mode") != "payment":
            raise _bad("FakeStripe only supports mode=payment", param="mode")
        items = _require(p, "line_items")
        if not isinstance(items, list):
            raise _bad("Invalid array", param="line_items")
        total, currency = 0, None
        for i, item in enumerate(items):
            pre = f"line_items[{i}]"
            _check_keys(item, {"price_data", "quantity"}, pre)
            pd = _check_keys(
                _require(item, "price_data", pre),
                {"currency", "unit_amount", "product_data"},
                pre + "[price_data]",
            )
            cur = _require(pd, "currency", pre + "[price_data]").lower()
            unit = _int(_require(pd, "unit_amount", pre + "[price_data]"), pre + "[price_data][unit_amount]", lo=0)
            prod = _check_keys(
                _require(pd, "product_data", pre + "[price_data]"),
                {"name", "description"},
                pre + "[price_data][product_data]",
            )
            _require(prod, "name", pre + "[price_data][product_data]")
            qty = _int(_require(item, "quantity", pre), pre + "[quantity]", lo=1)
            if currency not in (None, cur):
                raise _bad("All line items must use the same currency.", param="line_items")
            currency, total = cur, total + unit * qty
        minimum = _MIN_CHARGE.get(currency, 50)
        if total < minimum:
            raise _bad(
                f"The Checkout Session's total amount due must add up to at least {minimum} {currency}",
                code="amount_too_small",
                param="line_items",
            )
        pi_data = _check_keys(p.get("payment_intent_data", {}), {"metadata", "description"}, "payment_intent_data")
        if "metadata" in pi_data:
            pi_data["metadata"] = _metadata(pi_data["metadata"], "payment_intent_data[metadata]")
        if len(p.get("client_reference_id", "")) > 200:
            raise _bad("client_reference_id is too long", param="client_reference_id")
        now = self.clock()
        expires_at = now + 86400
        if "expires_at" in p:
            expires_at = _int(p["expires_at"], "expires_at", lo=now + 1800, hi=now + 86400)
        s = self._store(
            "cs_test",
            {
                "object": "checkout.session",
                "amount_subtotal": total,
                "amount_total": total,
                "cancel_url": p.get("cancel_url"),
                "client_reference_id": p.get("client_reference_id"),
                "created": now,
                "currency": currency,
                "customer": None,
                "customer_details": None,
                "customer_email": p.get("customer_email"),
                "expires_at": expires_at,
                "livemode": False,
                "locale": p.get("locale"),
                "metadata": _metadata(p.get("metadata", {})),
                "mode": "payment",
                "payment_intent": None,
                "payment_status": "unpaid",
                "status": "open",
                "success_url": p.get("success_url"),
                "url": None,
            },
        )
        s["url"] = f"{self.url}/pay/{s['id']}"
        self._private[s["id"]] = {"pi_data": pi_data, "line_items": items, "fee": None}
        return s

    def _list(self, p: dict, kind: str, url: str, filters: dict[str, Callable]) -> dict:
        _check_keys(p, {"limit", "starting_after", "ending_before", "created", *filters})
        limit = _int(p.get("limit", "10"), "limit", lo=1, hi=100)
        items = [o for o in self._objects.values() if o["object"] == kind]
        ops = {"gt": int.__gt__, "gte": int.__ge__, "lt": int.__lt__, "lte": int.__le__}
        created = p.get("created", {})
        if isinstance(created, str):
            created, ops = {"eq": created}, {"eq": int.__eq__}
        for op, bound in _check_keys(created, set(ops), "created").items():
            bound = _int(bound, f"created[{op}]")
            items = [o for o in items if ops[op](o["created"], bound)]
        for key, pred in filters.items():
            if key in p:
                items = [o for o in items if pred(o, p[key])]
        items = [o for _, o in sorted(enumerate(items), reverse=True, key=lambda t: (t[1]["created"], t[0]))]
        ids = [o["id"] for o in items]
        for key in ("starting_after", "ending_before"):
            if key in p and p[key] not in ids:
                self._get(p[key], kind, status=400, param=key)
        if "starting_after" in p:
            items = items[ids.index(p["starting_after"]) + 1 :]
        elif "ending_before" in p:
            end = ids.index(p["ending_before"])
            items = items[max(0, end - limit) : end]
        return {"object": "list", "data": items[:limit], "has_more": len(items) > limit, "url": url}

    def _ep_list_sessions(self, p: dict) -> dict:
        eq = lambda field: lambda o, v: o[field] == v  # noqa: E731
        return self._list(
            p,
            "checkout.session",
            "/v1/checkout/sessions",
            {"status": eq("status"), "payment_intent": eq("payment_intent")},
        )

    def _ep_list_refunds(self, p: dict) -> dict:
        eq = lambda field: lambda o, v: o[field] == v  # noqa: E731
        return self._list(p, "refund", "/v1/refunds", {"charge": eq("charge"), "payment_intent": eq("payment_intent")})

    def _ep_list_balance_transactions(self, p: dict) -> dict:
        eq = lambda field: lambda o, v: o[field] == v  # noqa: E731
        return self._list(
            p,
            "balance_transaction",
            "/v1/balance_transactions",
            {"type": eq("type"), "source": eq("source"), "currency": eq("currency")},
        )

    def _ep_list_payouts(self, p: dict) -> dict:
        eq = lambda field: lambda o, v: o[field] == v  # noqa: E731
        return self._list(p, "payout", "/v1/payouts", {"status": eq("status")})

    def _ep_balance(self, p: dict) -> dict:
        _check_keys(p, set())
        now = self.clock()
        sums: dict[str, dict[str, int]] = {"available": {}, "pending": {}}
        for o in self._objects.values():
            if o["object"] == "balance_transaction":
                part = sums["available" if o["available_on"] <= now else "pending"]
                part[o["currency"]] = part.get(o["currency"], 0) + o["net"]
        return {
            "object": "balance",
            "livemode": False,
            **{
                k: [{"amount": a, "currency": c, "source_types": {"card": a}} for c, a in v.items()]
                for k, v in sums.items()
            },
        }

    def _ep_list_events(self, p: dict) -> dict:
        def types(o, v):
            return any(fnmatch.fnmatchcase(o["type"], t) for t in (v if isinstance(v, list) else [v]))

        return self._list(p, "event", "/v1/events", {"type": types, "types": types})

    def _ep_create_refund(self, p: dict) -> dict:
        _check_keys(p, {"payment_intent", "charge", "amount", "metadata", "reason"})
        if "payment_intent" in p:
            pi = self._get(p["payment_intent"], "payment_intent", status=400, param="payment_intent")
            if not pi["latest_charge"] or pi["status"] != "succeeded":
                raise _bad(
                    f"This PaymentIntent ({pi['id']}) does not have a successful charge to refund.",
                    param="payment_intent",
                )
            ch = self._objects[pi["latest_charge"]]
        elif "charge" in p:
            ch = self._get(p["charge"], "charge", status=400, param="charge")
        else:
            raise _bad(
                "One of the following params should be provided for this request: payment_intent or charge.",
                code="parameter_missing",
            )
        if p.get("reason") not in (None, "duplicate", "fraudulent", "requested_by_customer"):
            raise _bad(f"Invalid reason: {p['reason']}", param="reason")
        remaining = ch["amount"] - ch["amount_refunded"]
        if remaining <= 0:
            raise _bad(
                f"Charge {ch['id']} has already been refunded.",
                code="charge_already_refunded",
                param="amount",
            )
        amount = _int(p["amount"], "amount", lo=1) if "amount" in p else remaining
        if amount > remaining:
            raise _bad(
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
                code="amount_too_large",
                param="amount",
            )
        cur = ch["currency"]
        txn = self._balance_txn(-amount, cur, "refund", None)
        failing, self._fail_next_refund = self._fail_next_refund, False
        refund = self._store(
            "re",
            {
                "object": "refund",
                "amount": amount,
                "balance_transaction": txn["id"],
                "charge": ch["id"],
                "currency": cur,
                "metadata": _metadata(p.get("metadata", {})),
                "payment_intent": ch["payment_intent"],
                "reason": p.get("reason"),
                "status": "pending" if failing else "succeeded",
                "failure_reason": None,
            },
        )
        txn["source"] = refund["id"]
        ch["amount_refunded"] += amount
        ch["refunded"] = ch["amount_refunded"] == ch["amount"]
        self._event("refund.created", refund)
        if not failing:
            self._event("charge.refunded", ch)
            return refund
        response = copy.deepcopy(refund)
        ftxn = self._balance_txn(amount, cur, "refund_failure", refund["id"])
        refund.update(
            status="failed", failure_reason="expired_or_canceled_card", failure_balance_transaction=ftxn["id"]
        )
        ch["amount_refunded"] -= amount
        ch["refunded"] = False
        self._event("refund.failed", refund)
        self._event("refund.updated", refund, previous={"status": "pending"})
        self._event("charge.refund.updated", refund, previous={"status": "pending"})
        return response

    # --------------------------------------------------------------------- HTTP
    def _wsgi(self, environ, start_response):
        request = Request(environ)
        if request.path.startswith("/pay/"):
            return self._pay_page(request)(environ, start_response)
        return self._api(request)(environ, start_response)

    def _api(self, request: Request) -> Response:
        for hook in list(self.request_hooks):
            hook(request.method, request.path)
        with self.lock:
            hanging = self._take(self._hang, request.method, request.path)
        if hanging:  # nothing is done; the client gives up long before
            self._released.wait(60)
            return self._json(503, {"error": {"type": "api_error", "message": "timed out"}}, {})
        response = self._answer(request)
        with self.lock:
            losing = self._take(self._lose, request.method, request.path)
        if losing:  # the work is done, the answer never reaches the client in time
            self._released.wait(60)
        return response

    def _answer(self, request: Request) -> Response:
        req_id = f"req_{uuid.uuid4().hex[:14]}"
        headers = {"Request-Id": req_id, "Stripe-Version": API_VERSION}
        key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        try:
            auth = _AUTH_RE.match(request.headers.get("Authorization", ""))
            if not auth or (self.api_key and auth.group(1) != self.api_key):
                raise _StripeError(401, "Invalid API Key provided (FakeStripe accepts 'Bearer sk_test_...').")
            try:
                endpoint, args = self._routes.bind_to_environ(request.environ).match()
            except HTTPException:
                raise _StripeError(404, f"Unrecognized request URL ({request.method}: {request.path}).") from None
            pairs = (request.form if request.method == "POST" else request.args).items(multi=True)
            params = _parse_form(pairs)
            with self.lock:
                self.requests.append({"method": request.method, "path": request.path, "params": copy.deepcopy(params)})
                if key:
                    scope, fingerprint = (
                        (auth.group(1), key),
                        (request.path, json.dumps(params, sort_keys=True)),
                    )
                    remembered = self._idempotency.get(scope)
                    if remembered and self.clock() - remembered[3] >= IDEMPOTENCY_TTL_SECONDS:
                        del self._idempotency[scope]  # Stripe forgets keys after 24 hours
                    if scope in self._idempotency:
                        old_fp, status, body, _ = self._idempotency[scope]
                        if old_fp != fingerprint:
                            raise _StripeError(
                                400,
                                "Keys for idempotent requests can only be "
                                "used with the same parameters they were first "
                                f"used with. Try using a key other than '{key}' "
                                "if you meant to execute a different request.",
                                type="idempotency_error",
                            )
                        headers.update({"Idempotency-Key": key, "Idempotent-Replayed": "true"})
                        return self._json(status, body, headers)
                    headers["Idempotency-Key"] = key
                expand = params.pop("expand", [])
                self._request_ctx = {"id": req_id, "idempotency_key": key}
                try:
                    body = copy.deepcopy(getattr(self, "_ep_" + endpoint)(params, **args))
                    for path in expand if isinstance(expand, list) else [expand]:
                        self._expand(body, path, path)
                    status = 200
                except _StripeError as e:
                    status, body = e.status, e.body
                finally:
                    self._request_ctx = {"id": None, "idempotency_key": None}
                if key:
                    self._idempotency[scope] = (fingerprint, status, body, self.clock())
        except _StripeError as e:
            status, body = e.status, e.body
        return self._json(status, body, headers)

    @staticmethod
    def _json(status: int, body: dict, headers: dict) -> Response:
        return Response(json.dumps(body, indent=2), status=status, headers=headers, mimetype="application/json")

    def _pay_page(self, request: Request) -> Response:
        """Minimal hosted-checkout page: GET shows it, POST pays and redirects to success_url."""
        session_id = request.path.removeprefix("/pay/")
        with self.lock:
            s = self._objects.get(session_id)
            if not s or s["object"] != "checkout.session":
                return Response("No such checkout session", status=404)
            if request.method == "POST" and s["status"] == "open":
                self.complete_checkout(session_id)
            if s["status"] == "complete" and s["success_url"]:
                return redirect(s["success_url"].replace("{CHECKOUT_SESSION_ID}", s["id"]), 303)
            if s["status"] != "open":
                return Response(f"Checkout session is {s['status']}", status=410)
            cancel = s["cancel_url"]
            body = (
                f"<!doctype html><title>FakeStripe Checkout</title>"
                f"<h1>Pay {s['amount_total']} {html.escape(s['currency'].upper())} "
                f"(minor units)</h1><form method=post><button type=submit id=pay>Pay</button>"
                f"</form>" + (f'<a id=cancel href="{html.escape(cancel)}">Cancel</a>' if cancel else "")
            )
        return Response(body, mimetype="text/html")
