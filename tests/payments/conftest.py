"""Fixtures for payment tests: a local fake Stripe and an app configured to use it."""

from __future__ import annotations

import json
import re

import pytest

from tests.fakes.fake_stripe import FakeStripe, signed_headers

WEBHOOK_SECRET = "whsec_test"


@pytest.fixture
def fake_stripe():
    """A fake Stripe API server on a free local port, stopped after the test."""
    with FakeStripe() as fake:
        yield fake


@pytest.fixture
def stripe_app(app, fake_stripe):
    """The test app switched to the Stripe provider, talking to the fake."""
    app.config.update(PAYMENTS="stripe", STRIPE_SECRET_KEY="sk_test_x", STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
                      STRIPE_API_BASE=fake_stripe.url)
    return app


@pytest.fixture
def deliver(stripe_app, fake_stripe):
    """POST an event (dict, id, or raw bytes) to the webhook, signed with the endpoint secret."""

    def do(event, *, client=None, secret: str = WEBHOOK_SECRET, timestamp: int | None = None, headers=None):
        body = event if isinstance(event, bytes) else fake_stripe.event_payload(event)
        sent = signed_headers(body, secret, timestamp=timestamp) if headers is None else headers
        return (client or stripe_app.test_client()).post("/stripe/webhook", data=body, headers=sent)

    return do


@pytest.fixture
def resign():
    """Rewrite an event's JSON with `change(dict)` and return the new raw body (to sign again)."""

    def do(fake, event, change) -> bytes:
        data = json.loads(fake.event_payload(event))
        change(data)
        return json.dumps(data).encode()

    return do


@pytest.fixture
def checkout_session_id():
    """The Checkout Session id from the URL the app redirected to."""

    def do(response) -> str:
        match = re.search(r"/pay/(cs_test_\w+)", response.headers["Location"])
        assert match, response.headers.get("Location")
        return match.group(1)

    return do
