"""flask statement: write a month's settlement statement (issued, or else a draft) to a file."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext
from flask_babel import force_locale
from sqlalchemy import select

from chargeshed.extensions import db
from chargeshed.settlement.exports import FORMATS, statement_file
from chargeshed.settlement.periods import Period, SettlementRefused
from chargeshed.settlement.statements import view_statement
from chargeshed.sites.models import Shed


@click.command("statement")
@click.argument("operator_id", type=int)
@click.argument("site_id", type=int)
@click.argument("month")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="pdf", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), required=True, help="File to write.")
@click.option("--lang", default=None, help="Language of the statement (zh_CN, en); default: the site's.")
@with_appcontext
def statement_command(operator_id: int, site_id: int, month: str, fmt: str, output: str, lang: str | None) -> None:
    """Write the statement of OPERATOR_ID at SITE_ID for MONTH (YYYY-MM); a draft if it is not issued."""
    languages = current_app.config["LANGUAGES"]
    if lang is not None and lang not in languages:
        raise click.BadParameter(f"choose one of {', '.join(languages)}", param_hint="--lang")
    with force_locale(lang or current_app.config["BABEL_DEFAULT_LOCALE"]):
        _write_statement(operator_id, site_id, month, fmt, output)


def _write_statement(operator_id: int, site_id: int, month: str, fmt: str, output: str) -> None:
    runs_sheds = db.session.execute(
        select(Shed.id).where(Shed.operator_id == operator_id, Shed.site_id == site_id).limit(1)
    ).first()
    if runs_sheds is None:
        raise click.ClickException(f"operator {operator_id} runs no shed at site {site_id}")
    try:
        view = view_statement(operator_id, site_id, Period.month(month))
    except SettlementRefused as refused:
        raise click.ClickException(str(refused.message)) from None
    content, _name = statement_file(view, fmt)
    with open(output, "wb") as handle:
        handle.write(content)
    what = f"statement {view.number}" if view.number else f"{view.status} statement (not issued)"
    click.echo(f"wrote {what} for {view.period.label} to {output}")


COMMANDS = [statement_command]
