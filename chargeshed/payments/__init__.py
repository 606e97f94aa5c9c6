"""Payments: providers (Stripe, demo), top-up fulfilment, webhook events, fees, cash-outs and
goodwill refunds, reconciliation with the provider."""
