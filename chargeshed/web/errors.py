"""Friendly error pages (never a bare 500); JSON for JSON clients.

The 500 page must render when the database is what failed: it then shows the signed-out layout
(no query for the signed-in user), and as a last resort a fixed page, still with our headers.
"""

from __future__ import annotations

import logging

from flask import Flask, g, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import Forbidden as HTTPForbidden
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.exceptions import NotFound as HTTPNotFound

from chargeshed import errors

log = logging.getLogger(__name__)

# Shown when even the template cannot be rendered (its text is in both languages, no lookups).
BARE_500 = (
    '<!doctype html><html lang="zh-CN"><meta charset="utf-8"><title>500</title>'
    "<h1>出错了 · Something went wrong</h1><p>您保存的内容没有丢失，请稍后再试。"
    " · Nothing you stored was lost. Please try again in a moment.</p></html>"
)


def _error_page(error: HTTPException, **context):
    if request.path.startswith("/stripe/") or request.accept_mimetypes.best == "application/json":
        return {"error": error.name, "status": error.code}, error.code
    return render_template("error.html", error=error, **context), error.code


def init_app(app: Flask) -> None:
    """Register one handler for every HTTP error, and turn domain errors into 404 and 403."""

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return _error_page(error)

    @app.errorhandler(errors.NotFound)
    def not_found(error: errors.NotFound):
        return http_error(HTTPNotFound())

    @app.errorhandler(errors.Forbidden)
    def forbidden(error: errors.Forbidden):
        return http_error(HTTPForbidden())

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        return _error_page(error, csrf=True)

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("unhandled error")
        from chargeshed.extensions import db, login_manager

        try:
            db.session.rollback()
        except Exception:  # the database itself may be down
            log.warning("rollback after an error failed", exc_info=True)
        try:
            return _error_page(InternalServerError())
        except Exception:
            log.warning("error page needed the database; rendering it signed out", exc_info=True)
        # Do not ask the (failing) database who is signed in: the page shows the signed-out layout.
        g._login_user = login_manager.anonymous_user()
        try:
            return _error_page(InternalServerError())
        except Exception:
            log.exception("error page could not be rendered")
            return BARE_500, 500, {"Content-Type": "text/html; charset=utf-8"}
