"""Public hazard reports: anyone (anonymous allowed, on a phone) reports a fire hazard and follows it.

The staff side of the same cases is web/safety.py.
"""

from __future__ import annotations

import re

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.exceptions import NotFound, RequestEntityTooLarge

from chargeshed.extensions import db, limiter
from chargeshed.htmx import render_page_or_partial
from chargeshed.safety import labels, queries, uploads, workflow
from chargeshed.safety.models import HazardCase
from chargeshed.sites.models import Building, Site
from chargeshed.web.forms import typed_port
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


def _form_page(form, site: Site, similar, status: int):
    return render_template(
        "safety/report.html",
        form=form,
        site=site,
        similar=similar,
        similar_url=url_for(".similar", site_id=site.id),
        max_mb=uploads.MAX_PHOTO_BYTES // (1024 * 1024),
        response_hours=response_hours(),
    ), status


def _report_site(site_id: int | None, building_id: int | None) -> Site | None:
    """The compound the reporter came from: the one a link names (/report/s/<site>, a building's
    /report/b/<building>; 404 for an id of nothing); on plain /report a signed-in person's own
    compound, or the platform's only one; else None (the reporter is asked which)."""
    if building_id is not None:
        building = db.session.get(Building, building_id)
        if building is None:
            abort(404)
        return building.site
    if site_id is not None:
        site = db.session.get(Site, site_id)
        if site is None:
            abort(404)
        return site
    home = current_user.site_id if current_user.is_authenticated else None
    home = home or queries.only_site_id()
    return db.session.get(Site, home) if home else None


def _hints(site: Site, form) -> list[workflow.SimilarHint]:
    building, unit, floor = form.building.data, form.unit.data, form.floor.data
    if not isinstance(building, int) or not isinstance(floor, int):
        return []
    return workflow.public_similar_hints(site.id, building, unit if isinstance(unit, int) else None, floor)


def _which_compound():
    """Plain /report with no compound known: find it from a port code typed from a sticker."""
    typed = request.args.get("code", "")
    code, port, message = typed_port(typed)
    if port is not None:
        return redirect(url_for(".new", site_id=port.shed.site_id))
    status = 404 if code else (400 if request.method == "POST" else 200)
    return render_template("safety/report_where.html", typed=typed, message=message), status


@bp.route("/report", methods=["GET", "POST"])
@bp.route("/report/s/<int:site_id>", methods=["GET", "POST"])
@bp.route("/report/b/<int:building_id>", methods=["GET", "POST"])
@limiter.limit(REPORT_LIMITS, methods=["POST"])
@limiter.limit(REPORTER_LIMITS, methods=["POST"], key_func=_reporter_key, exempt_when=_anonymous_without_contact)
def new(site_id: int | None = None, building_id: int | None = None):
    """Report a fire hazard: anyone, anonymous allowed; answers with a tracking link.

    The form is the compound's the reporter came from (the notice in their building, a port's page,
    the free-port page): only its buildings are offered and accepted, and the platform's other
    compounds are never listed."""
    site = _report_site(site_id, building_id)
    if site is None or (site_id is None and building_id is None and request.args.get("code")):
        return _which_compound()
    form = report_form(building_id, {site.id})
    if form.validate_on_submit():
        photos = clean_uploads(form.photos)
        if photos is not None:
            case = workflow.file_report(
                new_report(form),
                photos,
                reporter_id=current_user.id if current_user.is_authenticated else None,
            )
            db.session.commit()
            flash(_("Thank you. Your report was received. Keep this page's address to follow the case."), "ok")
            return redirect(url_for(".track", token=case.tracking_token), code=303)
    elif request.method == "POST":
        ask_for_photos_again(form.photos)
    return _form_page(form, site, _hints(site, form), 400 if request.method == "POST" else 200)


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(error):
    """An upload over the request limit: say so on the form (the photos must be chosen again)."""
    args = request.view_args or {}
    site = _report_site(args.get("site_id"), args.get("building_id")) if request.endpoint == "report.new" else None
    if site is not None:
        form = report_form(None, {site.id}, blank=True)
        form.photos.errors = [_("The photos are too large together. Choose fewer or smaller photos.")]
        return _form_page(form, site, [], 413)
    return render_template("error.html", error=error), 413


@bp.get("/report/s/<int:site_id>/similar")
def similar(site_id: int):
    """The duplicate hint for the report form (htmx): open cases at the place typed, in this compound
    only, told in the reporter's own words (workflow.public_similar_hints)."""
    site = _report_site(site_id, None)
    building_id = request.args.get("building", type=int)
    hints = []
    if building_id is not None:
        building = db.session.get(Building, building_id)
        if building is None or building.site_id != site.id:
            abort(404)
        hints = workflow.public_similar_hints(
            site.id, building.id, request.args.get("unit", type=int), request.args.get("floor", type=int)
        )
    return render_page_or_partial(
        "safety/similar_page.html",
        "safety/_similar_hints.html",
        similar=hints,
        site=site,
        similar_url=url_for(".similar", site_id=site.id),
    )


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
