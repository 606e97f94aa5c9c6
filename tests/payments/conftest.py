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
    app.config.update(
        PAYMENTS="stripe",
        STRIPE_SECRET_KEY="sk_test_x",
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        STRIPE_API_BASE=fake_stripe.url,
    )
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


@pytest.fixture
def stripe_provider(stripe_app):
    """The app's Stripe provider (the same object the views build from the config)."""
    from chargeshed.payments.providers import provider_from_config

    return provider_from_config(stripe_app.config)


@pytest.fixture
def stripe_topup(stripe_app, stripe_provider, fake_stripe, deliver):
    """A Stripe top-up for a user, paid at the fake; delivered to the webhook unless told not to."""
    from chargeshed.extensions import db
    from chargeshed.payments import fulfilment
    from chargeshed.payments.providers import CheckoutUrls

    def do(user, amount_fen: int = 1000, *, fee: int | None = None, webhook: bool = True, pay: bool = True):
        topup = fulfilment.create_topup(user.id, amount_fen, [amount_fen], "cny", "stripe")
        db.session.commit()  # as the view does: no transaction open while Stripe is called
        urls = CheckoutUrls("https://charge.example.cn/ok", "https://charge.example.cn/no", "/demo")
        stripe_provider.create_checkout(topup, urls, "ChargeShed wallet top-up")
        db.session.commit()
        if pay:
            event = fake_stripe.complete_checkout(topup.checkout_ref, fee=fee)
            if webhook:
                assert deliver(event).status_code == 200
        db.session.refresh(topup)
        return topup

    return do


@pytest.fixture
def ended_session(make_site, make_resident, driver, clock, tick):
    """A finished charge of 90 minutes at 250 W on port T11001: it costs ¥1.00 under the default tariff."""
    from sqlalchemy import select

    from chargeshed.charging import sessions
    from chargeshed.extensions import db
    from chargeshed.ports.sim import Bike
    from chargeshed.sites.models import Port

    def do(user=None, code: str = "T11001"):
        user = user or make_resident(balance_fen=1000)
        port = db.session.execute(select(Port).where(Port.code == code)).scalar_one()
        session = sessions.start_session(user.id, port)
        driver.plug(code, bike=Bike("lithium", cc_watts=250, cc_minutes=600, taper_minutes=30))
        tick()
        clock.advance(minutes=90)
        tick()
        assert sessions.end_session(session, sessions.USER_STOP)
        db.session.refresh(session)
        assert session.cost_fen == 100
        return session

    return do


@pytest.fixture
def with_refunds_blueprint(app):
    """Register the staff refunds blueprint when the app does not (yet) do it itself."""
    from chargeshed.web import refunds

    if "refunds" not in app.blueprints:
        app.register_blueprint(refunds.bp)
    return app
