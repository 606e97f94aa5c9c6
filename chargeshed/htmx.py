"""Our one wrapper over htmx-flask: when to send a partial, and response headers."""

from __future__ import annotations

from flask import render_template, request
from htmx_flask import make_response as _htmx_make_response

# htmx-flask 0.1.0 lists "beforebegin" "afterbegin" without a comma; check swaps ourselves.
SWAPS = {"innerHTML", "outerHTML", "beforebegin", "afterbegin", "beforeend", "afterend", "delete", "none"}


def is_partial() -> bool:
    """True for an htmx request that wants a fragment: not boosted, not a history restore."""
    hx = getattr(request, "htmx", None)
    return bool(hx) and not hx.boosted and not hx.history_restore_request


def make_response(*args, reswap: str | None = None, **headers):
    """flask.make_response plus htmx headers (HX-Trigger, HX-Redirect, ...), with a safe reswap."""
    if reswap is not None and reswap not in SWAPS:
        raise ValueError(f"invalid swap {reswap}")
    response = _htmx_make_response(*args, **headers)
    if reswap:
        response.headers["HX-Reswap"] = reswap
    return response


def render_page_or_partial(page: str, partial: str, status: int = 200, **context):
    """Render the full page, or only its partial for htmx; always Vary on HX-Request."""
    template = partial if is_partial() else page
    response = make_response(render_template(template, **context), status)
    response.vary.add("HX-Request")
    return response
