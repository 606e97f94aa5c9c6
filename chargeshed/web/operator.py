"""Operator back office: agreements, settlement statements, refunds."""

from __future__ import annotations

from flask import Blueprint, render_template

from chargeshed.accounts.access import MONEY_ROLES, staff_required

bp = Blueprint("operator", __name__, url_prefix="/operator")


@bp.get("/")
@staff_required(*MONEY_ROLES)
def index():
    """Placeholder landing page of this area."""
    return render_template("backoffice_placeholder.html")
