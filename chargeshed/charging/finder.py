"""Finding a port as a resident: free / busy / out-of-service counts per shed and the nearest free ports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from chargeshed.charging.occupancy import ShedBlock, occupancy
from chargeshed.extensions import db
from chargeshed.sites.models import Port, Shed


@dataclass(frozen=True)
class FreePort:
    """A free port a resident can walk to."""

    shed_name: str
    number: int
    code: str


def site_sheds(site_id: int, now: datetime) -> list[ShedBlock]:
    """Every shed of a site with its ports' live states and counts."""
    return occupancy(select(Shed.id).where(Shed.site_id == site_id), now)


def free_ports_near(
    site_id: int,
    shed_id: int,
    exclude_port_id: int,
    now: datetime,
    limit: int = 6,
    blocks: list[ShedBlock] | None = None,
) -> list[FreePort]:
    """Free ports of a site, the given shed's first, then the other sheds (by name)."""
    blocks = blocks if blocks is not None else site_sheds(site_id, now)
    ordered = sorted(blocks, key=lambda block: block.shed_id != shed_id)
    picked = [
        (block.name, cell)
        for block in ordered
        for cell in block.cells
        if cell.state == "free" and cell.port_id != exclude_port_id
    ][:limit]
    codes = dict(
        db.session.execute(
            select(Port.id, Port.code).where(Port.id.in_([cell.port_id for _name, cell in picked]))
        ).all()
    )
    return [FreePort(name, cell.number, codes[cell.port_id]) for name, cell in picked]
