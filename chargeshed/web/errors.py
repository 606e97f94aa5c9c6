"""Friendly error pages (never a bare 500); JSON for JSON clients."""

from __future__ import annotations

import logging

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import Forbidden as HTTPForbidden
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.exceptions import NotFound as HTTPNotFound

from chargeshed import errors

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Register one handler for every HTTP error, and turn domain errors into 404 and 403."""

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if request.path.startswith("/stripe/") or request.accept_mimetypes.best == "application/json":
            return {"error": error.name, "status": error.code}, error.code
        return render_template("error.html", error=error), error.code

    @app.errorhandler(errors.NotFound)
    def not_found(error: errors.NotFound):
        return http_error(HTTPNotFound())

    @app.errorhandler(errors.Forbidden)
    def forbidden(error: errors.Forbidden):
        return http_error(HTTPForbidden())

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        return render_template("error.html", error=error, csrf=True), 400

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("unhandled error")
        from chargeshed.extensions import db

        db.session.rollback()
        return http_error(InternalServerError())
