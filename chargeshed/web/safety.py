"""Fire safety: hazard reports (anyone) and the case workflow (staff)."""

from __future__ import annotations

from flask import Blueprint, render_template

from chargeshed.accounts.access import SAFETY_ROLES, staff_required

bp = Blueprint("safety", __name__)


@bp.get("/safety/cases")
@staff_required(*SAFETY_ROLES)
def cases():
    """Placeholder landing page of this area."""
    return render_template("backoffice_placeholder.html")
