"""flask safety-sync and safety-summary (safety-demo is in chargeshed/cli.py beside demo)."""

from __future__ import annotations

import re

import click
from flask import current_app
from flask.cli import with_appcontext
from flask_babel import force_locale

from chargeshed.extensions import db
from chargeshed.sites.models import Site
from chargeshed.timeutil import now as clock_now


@click.command("safety-sync")
@with_appcontext
def sync_command() -> None:
    """Open or extend safety incidents from port events since the last sync."""
    from chargeshed.safety.incidents import sync_incidents

    report = sync_incidents(clock_now())
    db.session.commit()
    click.echo(f"incidents opened: {len(report.opened)}, occurrences added: {report.added}")


@click.command("safety-summary")
@click.argument("site_id", type=int)
@click.argument("month")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, writable=True), required=True, help="PDF file to write."
)
@click.option("--lang", default=None, help="Language (zh_CN, en); default: the app's default.")
@with_appcontext
def summary_command(site_id: int, month: str, output: str, lang: str | None) -> None:
    """Write the monthly fire-safety summary of SITE_ID for MONTH (YYYY-MM) as a PDF."""
    from chargeshed.safety.stats import month_summary
    from chargeshed.safety.summary import render_pdf

    match = re.fullmatch(r"(\d{4})-(\d{2})", month)
    if not match or not 1 <= int(match[2]) <= 12:
        raise click.BadParameter("use YYYY-MM", param_hint="MONTH")
    languages = current_app.config["LANGUAGES"]
    if lang is not None and lang not in languages:
        raise click.BadParameter(f"choose one of {', '.join(languages)}", param_hint="--lang")
    site = db.session.get(Site, site_id)
    if site is None:
        raise click.ClickException(f"no site {site_id}")
    now = clock_now()
    with current_app.test_request_context(), force_locale(lang or current_app.config["BABEL_DEFAULT_LOCALE"]):
        body = render_pdf(month_summary(site.id, int(match[1]), int(match[2]), now), site.name, now)
    with open(output, "wb") as handle:
        handle.write(body)
    click.echo(f"wrote {output} ({len(body)} bytes)")


COMMANDS = [sync_command, summary_command]
