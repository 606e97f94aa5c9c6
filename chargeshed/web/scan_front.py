"""The anonymous pay page answered from its kept copy, in front of the request machinery.

Most scans of a port's QR code come from someone not signed in, whose phone sends no cookie. Such a
page is made only from the page's one statement (the port, shed, tariff, live session and the
site's occupancy version), the time (the offline debounce, the free ports' version), the path and
the default language. When Flask renders it, this layer keeps the bytes and headers Flask sent,
keyed by exactly those inputs; the next such request runs the one statement and, when the key is
one it has kept, answers with the same bytes and headers. The request id, the security headers and
the log line are added around both by the same layer (web/hardening.py's RequestEdge).
Anything else (a cookie, a query string, htmx, another method, a key not yet kept, an error) goes
through Flask unchanged, and only a 200 without cookies or unusual Vary is ever kept.
"""

from __future__ import annotations

import logging
import re

from flask import Flask, request

from chargeshed.charging.scan import Scan, load_scan, page_inputs
from chargeshed.extensions import autocommit_engine
from chargeshed.sites.codes import CODE_IN_LINK
from chargeshed.timeutil import now as clock_now
from chargeshed.web.render_cache import render_cache

log = logging.getLogger(__name__)

PAY_PAGE_PATH = re.compile(rf"/p/({CODE_IN_LINK.pattern})")
# Where the view leaves the key of a page it rendered for such a request.
ENVIRON_KEY = "chargeshed.scan_front"
# Vary values of a keepable response: the requests answered here carry neither header.
KEEPABLE_VARY = frozenset({"hx-request", "cookie"})


def offer(found: Scan, inputs) -> None:
    """Called by the pay page view for an anonymous page: the front may keep what is sent back."""
    request.environ[ENVIRON_KEY] = (found, inputs)


class ScanFront:
    """WSGI middleware: anonymous, cookie-free GET /p/<code> answered from the kept page when current."""

    def __init__(self, app: Flask, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if (
            environ.get("REQUEST_METHOD") != "GET"
            or environ.get("QUERY_STRING")
            or environ.get("HTTP_COOKIE")
            or environ.get("HTTP_HX_REQUEST")
            or not PAY_PAGE_PATH.fullmatch(path)
        ):
            return self.wsgi_app(environ, start_response)
        place = ("front", path, environ.get("SCRIPT_NAME", ""), environ.get("wsgi.url_scheme"))
        kept = self._kept(place, PAY_PAGE_PATH.fullmatch(path).group(1))
        if kept is None:
            return self._render_and_keep(place, environ, start_response)
        status, headers, body = kept
        start_response(status, list(headers))
        return [body]

    def _kept(self, place: tuple, code: str):
        """The kept response for this port as it is now, or None."""
        try:
            # The one statement in autocommit: no BEGIN and ROLLBACK round trips around it.
            with self.app.app_context(), autocommit_engine().connect() as connection:
                found = load_scan(code, connection=connection)
                if found is None:
                    return None
                return render_cache().get((*place, found, page_inputs(found, clock_now())))
        except Exception:  # the database or anything else: Flask answers (and reports) it
            log.warning("pay page front lookup failed", exc_info=True)
            return None

    def _render_and_keep(self, place: tuple, environ, start_response):
        sent = {}

        def capture(status, headers, exc_info=None):
            sent["status"], sent["headers"] = status, headers
            return start_response(status, headers, exc_info)

        result = self.wsgi_app(environ, capture)
        key = environ.get(ENVIRON_KEY)
        if key is None or not _keepable(sent.get("status", ""), sent.get("headers", ())):
            return result
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        with self.app.app_context():
            render_cache().put((*place, *key), (sent["status"], tuple(sent["headers"]), body))
        return [body]


def _keepable(status: str, headers) -> bool:
    """A plain 200 that sets no cookie, is not encoded and varies on nothing these requests send."""
    if not status.startswith("200"):
        return False
    for name, value in headers:
        lowered = name.lower()
        if lowered in ("set-cookie", "content-encoding"):
            return False
        if lowered == "vary" and not {v.strip().lower() for v in value.split(",")} <= KEEPABLE_VARY:
            return False
    return True


def init_app(app: Flask) -> None:
    """Put the front before the app (inside any proxy fix, so the scheme it keys on is the client's)."""
    app.wsgi_app = ScanFront(app, app.wsgi_app)
