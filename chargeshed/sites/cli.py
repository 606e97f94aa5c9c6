"""flask commands for sites: qr-sheet."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from chargeshed.extensions import db


@click.command("qr-sheet")
@click.argument("shed_id", type=int)
@click.option(
    "-o", "--output", "output", required=True, type=click.Path(dir_okay=False, writable=True), help="PDF file to write."
)
@with_appcontext
def qr_sheet_command(shed_id: int, output: str) -> None:
    """Write the QR sticker sheet of a shed as a PDF (the same file the back office offers)."""
    from chargeshed.sites.models import Shed
    from chargeshed.sites.stickers import sticker_ports, sticker_sheet_pdf

    shed = db.session.get(Shed, shed_id)
    if shed is None:
        raise click.ClickException(f"no shed with id {shed_id}")
    pdf = sticker_sheet_pdf(shed, current_app.config["PUBLIC_BASE_URL"])
    with open(output, "wb") as handle:
        handle.write(pdf)
    click.echo(
        f"{output}: {len(sticker_ports(shed))} stickers for {shed.name}, "
        f"URLs under {current_app.config['PUBLIC_BASE_URL']}"
    )


COMMANDS = [qr_sheet_command]
