"""GET /healthz: the app and its database answer."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text

from chargeshed.extensions import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """200 with {"status": "ok", "db": "ok"}, or 503 naming the database error."""
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means the DB is not usable
        db.session.rollback()
        return jsonify(status="error", db=type(exc).__name__), 503
    return jsonify(status="ok", db="ok")
