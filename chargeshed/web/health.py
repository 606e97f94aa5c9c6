"""Operational endpoints: GET /healthz (the app and its database answer) and POST /csp-report."""

from __future__ import annotations

import json
import logging

from flask import Blueprint, jsonify, request
from sqlalchemy import text

from chargeshed.extensions import csrf, db, limiter

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)

CSP_REPORT_PATH = "/csp-report"
# A browser's report is a few hundred bytes; anything far larger is not one.
CSP_REPORT_MAX_BYTES = 8 * 1024
CSP_REPORT_FIELDS = (
    ("document-uri", "documentURL"),
    ("violated-directive", "effectiveDirective"),
    ("blocked-uri", "blockedURL"),
    ("source-file", "sourceFile"),
    ("line-number", "lineNumber"),
    ("script-sample", "sample"),
)


@bp.get("/healthz")
def healthz():
    """200 with {"status": "ok", "db": "ok"}, or 503 naming the database error."""
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means the DB is not usable
        db.session.rollback()
        return jsonify(status="error", db=type(exc).__name__), 503
    return jsonify(status="ok", db="ok")


@bp.get("/favicon.ico")
def favicon():
    """No icon: browsers ask for one on PDFs and images, where the page's `data:` icon does not apply."""
    return "", 204, {"Cache-Control": "public, max-age=86400"}


def csp_violations(payload: object) -> list[dict[str, str]]:
    """The violations in a CSP report body, old (`csp-report`) or Reporting API (a list) format, as short strings."""
    if isinstance(payload, dict) and isinstance(payload.get("csp-report"), dict):
        bodies = [(payload["csp-report"], 0)]
    elif isinstance(payload, list):
        bodies = [(item.get("body"), 1) for item in payload[:20] if isinstance(item, dict)]
    else:
        return []
    violations = []
    for body, style in bodies:
        if not isinstance(body, dict):
            continue
        violations.append({old: str(body.get((old, new)[style], ""))[:200] for old, new in CSP_REPORT_FIELDS})
    return violations


@bp.post(CSP_REPORT_PATH)
@csrf.exempt
@limiter.limit("30/minute", methods=["POST"])
def csp_report():
    """Log each Content-Security-Policy violation a browser reports (what was blocked, where); 204."""
    if (request.content_length or 0) > CSP_REPORT_MAX_BYTES:
        return "", 413
    raw = request.get_data(cache=False)
    if len(raw) > CSP_REPORT_MAX_BYTES:
        return "", 413
    try:
        violations = csp_violations(json.loads(raw))
    except (ValueError, UnicodeDecodeError):
        violations = []
    if not violations:
        return "", 400
    for violation in violations:
        log.warning(
            "csp violation", extra={"event": "csp.violation", **{k.replace("-", "_"): v for k, v in violation.items()}}
        )
    return "", 204
