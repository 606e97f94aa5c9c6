"""Security headers, request ids and structured request logs."""

from __future__ import annotations

import logging
import secrets
import time

from flask import Flask, g, request

log = logging.getLogger("chargeshed.request")


def content_security_policy(extra_form_action: str = "") -> str:
    """CSP without 'unsafe-inline': scripts and styles only from our own origin."""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'; form-action 'self'{extra_form_action}; frame-ancestors 'none'; "
        "base-uri 'none'; object-src 'none'"
    )


def init_app(app: Flask) -> None:
    """Add headers to every response and log each request with an id."""
    stripe_form = " https://checkout.stripe.com" if app.config["PAYMENTS"] == "stripe" else ""
    csp = content_security_policy(stripe_form)

    @app.before_request
    def start_request():
        g.request_id = request.headers.get("X-Request-Id", "")[:64] or secrets.token_hex(8)
        g.request_started = time.perf_counter()

    @app.after_request
    def secure_headers(response):
        headers = response.headers
        headers.setdefault("Content-Security-Policy", csp)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Permissions-Policy", "camera=(), geolocation=(), microphone=()")
        if request.is_secure:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        headers["X-Request-Id"] = g.get("request_id", "")
        if "request_started" in g:
            log.info(
                "request",
                extra={"request_id": g.request_id, "method": request.method, "path": request.path,
                       "status": response.status_code,
                       "ms": round((time.perf_counter() - g.request_started) * 1000, 1)},
            )
        return response
