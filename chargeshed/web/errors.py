"""Friendly error pages (never a bare 500); JSON for JSON clients."""

from __future__ import annotations

import logging

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Register one handler for every HTTP error."""

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if request.path.startswith("/stripe/") or request.accept_mimetypes.best == "application/json":
            return {"error": error.name, "status": error.code}, error.code
        return render_template("error.html", error=error), error.code

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        return render_template("error.html", error=error, csrf=True), 400

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("unhandled error")
        from chargeshed.extensions import db

        db.session.rollback()
        return http_error(InternalServerError())
