"""Wallet top-ups: provider interface, Stripe and demo providers, fulfilment."""
