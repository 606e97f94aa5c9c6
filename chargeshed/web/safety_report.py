"""Public hazard reports: anyone (anonymous allowed, on a phone) reports a fire hazard and follows it.

The staff side of the same cases is web/safety.py.
"""

from __future__ import annotations

import re

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.exceptions import NotFound, RequestEntityTooLarge

from chargeshed.extensions import limiter
from chargeshed.htmx import render_page_or_partial
from chargeshed.safety import labels, queries, uploads, workflow
from chargeshed.safety.models import HazardCase
from chargeshed.web.safety_forms import (
    ask_for_photos_again,
    clean_uploads,
    new_report,
    public_url,
    report_form,
    response_hours,
    send_photo,
)

bp = Blueprint("report", __name__)

REPORT_LIMITS = "5/minute;20/hour;60/day"
REPORTER_LIMITS = "10/day"


@bp.context_processor
def _labels():
    return {"S": labels, "location": labels.case_location}


def _reporter_key() -> str:
    """The second rate-limit key: the signed-in account, else the contact number given."""
    if current_user.is_authenticated:
        return f"user:{current_user.id}"
    contact = request.form.get("contact", "")
    digits = re.sub(r"\D", "", contact)
    return f"contact:{digits or contact.strip().lower()}"


def _anonymous_without_contact() -> bool:
    return not current_user.is_authenticated and not request.form.get("contact", "").strip()


def _form_page(form, similar, status: int):
    return render_template(
        "safety/report.html",
        form=form,
        similar=similar,
        max_mb=uploads.MAX_PHOTO_BYTES // (1024 * 1024),
        response_hours=response_hours(),
    ), status


@bp.route("/report", methods=["GET", "POST"])
@bp.route("/report/b/<int:building_id>", methods=["GET", "POST"])
@limiter.limit(REPORT_LIMITS, methods=["POST"])
@limiter.limit(REPORTER_LIMITS, methods=["POST"], key_func=_reporter_key, exempt_when=_anonymous_without_contact)
def new(building_id: int | None = None):
    """Report a fire hazard: anyone, anonymous allowed; answers with a tracking link."""
    form = report_form(building_id)
    if form.validate_on_submit():
        photos = clean_uploads(form.photos)
        if photos is not None:
            case = workflow.file_report(
                new_report(form),
                photos,
                reporter_id=current_user.id if current_user.is_authenticated else None,
            )
            flash(_("Thank you. Your report was received. Keep this page's address to follow the case."), "ok")
            return redirect(url_for(".track", token=case.tracking_token), code=303)
    elif request.method == "POST":
        ask_for_photos_again(form.photos)
    similar_cases = workflow.similar_open_cases(
        form.building.data if isinstance(form.building.data, int) else None, form.unit.data, form.floor.data
    )
    return _form_page(form, similar_cases, 400 if request.method == "POST" else 200)


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(error):
    """An upload over the request limit: say so on the form (the photos must be chosen again)."""
    if request.endpoint == "report.new":
        form = report_form(None, blank=True)
        form.photos.errors = [_("The photos are too large together. Choose fewer or smaller photos.")]
        return _form_page(form, [], 413)
    return render_template("error.html", error=error), 413


@bp.get("/report/similar")
def similar():
    """The duplicate hint for the report form (htmx): open cases at the same place."""
    building_id = request.args.get("building", type=int)
    cases = workflow.similar_open_cases(
        building_id, request.args.get("unit", type=int), request.args.get("floor", type=int)
    )
    return render_page_or_partial("safety/similar_page.html", "safety/_similar.html", similar=cases)


class UnknownTrackingLink(NotFound):
    """A tracking address that matches no report: its own 404 page, not the port sticker's."""


@bp.errorhandler(UnknownTrackingLink)
def _unknown_tracking_link(_error):
    response = current_app.make_response((render_template("safety/track_missing.html"), 404))
    return _private(response)


def _case_by_token_or_404(token: str) -> HazardCase:
    case = workflow.find_by_token(token)
    if case is None:
        raise UnknownTrackingLink()
    return case


def _private(response):
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/report/t/<token>")
def track(token: str):
    """The reporter's tracking page: state and public steps, never anyone's personal data."""
    case = _case_by_token_or_404(token)
    steps = [e for e in case.events if e.action in labels.PUBLIC_ACTIONS]
    photos = queries.report_photos(case)
    response = current_app.make_response(
        render_template(
            "safety/track.html",
            case=case,
            steps=steps,
            photos=photos,
            response_hours=response_hours(),
            tracking_url=public_url(".track", token=case.tracking_token),
        )
    )
    return _private(response)


@bp.get("/report/t/<token>/photos/<int:photo_id>")
@bp.get("/report/t/<token>/photos/<int:photo_id>/<any(thumb):size>")
def track_photo(token: str, photo_id: int, size: str | None = None):
    """A photo the reporter sent, through the tracking link only."""
    photo = queries.report_photo(_case_by_token_or_404(token), photo_id)
    if photo is None:
        abort(404)
    return _private(send_photo(photo, size == "thumb"))
