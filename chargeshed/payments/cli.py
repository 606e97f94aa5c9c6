"""flask reconcile: compare the books with the payment provider."""

from __future__ import annotations

import sys
import time

import click
from flask import current_app
from flask.cli import with_appcontext


@click.command("reconcile")
@click.option(
    "--days",
    default=3,
    show_default=True,
    type=click.IntRange(1, 30),
    help="Look back this many days (Stripe lists events for 30).",
)
@with_appcontext
def reconcile_command(days: int) -> None:
    """Credit paid top-ups whose webhook never came, record fees, settle refunds; report mismatches.

    Exits 1 when anything does not match, so a scheduler can alert.
    """
    from chargeshed.payments.providers import provider_from_config
    from chargeshed.payments.reconcile import reconcile

    provider = provider_from_config(current_app.config)
    if provider.is_demo:
        click.echo("Payments are in demo mode: nothing to reconcile.")
        return
    report = reconcile(
        provider,
        since=int(time.time()) - days * 86400,
        start_ttl_seconds=current_app.config["PENDING_START_TTL_SECONDS"],
    )
    for line in report.lines():
        click.echo(line, err=line.startswith("MISMATCH"))
    if report.mismatches:
        sys.exit(1)


COMMANDS = [reconcile_command]
