"""Port lookup by the code on its sticker."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from chargeshed.errors import NotFound
from chargeshed.extensions import db
from chargeshed.sites.codes import normalise_code
from chargeshed.sites.models import Port, Shed


def get_port_by_code_or_404(code: str) -> Port:
    """The port with this code (shed and tariff loaded), or NotFound."""
    port = db.session.execute(
        select(Port)
        .where(Port.code == normalise_code(code))
        .options(joinedload(Port.shed).joinedload(Shed.tariff), joinedload(Port.shed).joinedload(Shed.site))
    ).scalar_one_or_none()
    if port is None:
        raise NotFound(f"port code {code!r}")
    return port
