"""Back office for the property manager: occupancy, usage, ports, QR stickers, alerts."""

from __future__ import annotations

from flask import Blueprint, render_template

from chargeshed.accounts.access import MANAGE_ROLES, staff_required

bp = Blueprint("manage", __name__, url_prefix="/manage")


@bp.get("/")
@staff_required(*MANAGE_ROLES)
def index():
    """Placeholder landing page of this area."""
    return render_template("backoffice_placeholder.html")
