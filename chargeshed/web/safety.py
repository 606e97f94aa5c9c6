"""Fire safety: hazard reports (anyone, on a phone) and the case workflow (patrol and manager)."""

from __future__ import annotations

import re
from datetime import date, timedelta

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload
from werkzeug.exceptions import RequestEntityTooLarge
from wtforms.fields.choices import SelectChoice

from chargeshed.accounts.access import (
    SAFETY_ROLES,
    SAFETY_WRITE_ROLES,
    get_site_or_404,
    staff_required,
    visible_sites,
)
from chargeshed.extensions import db, limiter
from chargeshed.htmx import render_page_or_partial
from chargeshed.safety import charts, incidents, labels, stats, summary, uploads, workflow
from chargeshed.safety.access import (
    case_scope,
    get_building_or_404,
    get_case_or_404,
    get_incident_or_404,
    get_photo_or_404,
    incident_scope,
    sees_personal_data,
)
from chargeshed.safety.models import (
    CLOSED,
    DEADLINE_SET,
    HAZARD_TYPES,
    INCIDENT_OPEN,
    PHOTO_REPORT,
    REPORTED,
    SOURCE_PATROL,
    CasePhoto,
    HazardCase,
    Incident,
)
from chargeshed.sites import qr
from chargeshed.sites.models import Building, Site
from chargeshed.timeutil import now as clock_now
from chargeshed.web.safety_forms import IncidentCloseForm, LinkBikeForm, ReportForm, StepForm

bp = Blueprint("safety", __name__)

CASES_PAGE = 50
REPORT_LIMITS = "5/minute;20/hour;60/day"
REPORTER_LIMITS = "10/day"
LIST_FILTERS = ("open", "overdue", "awaiting", "closed", "all")


@bp.context_processor
def _labels():
    return {"S": labels, "location": labels.case_location}


def _public_url(endpoint: str, **values) -> str:
    """An absolute address on PUBLIC_BASE_URL (never the request's Host header)."""
    return current_app.config["PUBLIC_BASE_URL"].rstrip("/") + url_for(endpoint, **values)


def _response_hours() -> int:
    return int(current_app.config.get("SAFETY_RESPONSE_HOURS", stats.DEFAULT_RESPONSE_HOURS))


# --- Public: report a hazard, follow it -------------------------------------------------------------------


def _reporter_key() -> str:
    """The second rate-limit key: the signed-in account, else the contact number given."""
    if current_user.is_authenticated:
        return f"user:{current_user.id}"
    contact = request.form.get("contact", "")
    digits = re.sub(r"\D", "", contact)
    return f"contact:{digits or contact.strip().lower()}"


def _anonymous_without_contact() -> bool:
    return not current_user.is_authenticated and not request.form.get("contact", "").strip()


def _building_choices(site_ids: set[int] | None = None) -> tuple[list[SelectChoice], set[int]]:
    """Buildings to choose from (with the compound's name when there is more than one compound)."""
    query = (
        select(Building, Site.name).join(Site, Site.id == Building.site_id).order_by(Site.id, Building.number)
    )
    if site_ids is not None:
        query = query.where(Site.id.in_(site_ids))
    rows = db.session.execute(query).all()
    several = len({b.site_id for b, _name in rows}) > 1
    options = [SelectChoice("", _("Choose the building"))] + [
        SelectChoice(
            b.id, f"{name} · {labels.building_name(b.number)}" if several else labels.building_name(b.number)
        )
        for b, name in rows
    ]
    return options, {b.id for b, _name in rows}


def _report_form(
    building_id: int | None = None, site_ids: set[int] | None = None, *, blank: bool = False
) -> ReportForm:
    choices, ids = _building_choices(site_ids)
    form = ReportForm(formdata=None, building_ids=ids) if blank else ReportForm(building_ids=ids)
    form.building.choices = choices
    if request.method == "GET" and building_id in ids:
        form.building.data = building_id
    return form


def _clean_uploads(field, max_photos: int = uploads.MAX_PHOTOS) -> list[uploads.CleanPhoto] | None:
    """Decode and re-encode the chosen files; None (with messages on the field) when one is refused."""
    files = [
        f for f in (request.files.getlist(field.name) if field.name in request.files else []) if f.filename
    ]
    if len(files) > max_photos:
        field.errors = list(field.errors) + [_("Choose at most %(n)s photos.", n=max_photos)]
        return None
    photos, refused = [], []
    for upload in files:
        try:
            photos.append(uploads.clean_photo(uploads.read_upload(upload.stream)))
        except uploads.PhotoRejected as rejected:
            refused.append(f"{upload.filename[:60]}: {rejected}")
    if refused:
        field.errors = list(field.errors) + refused + [_("Please choose the photos again.")]
        return None
    return photos


def _ask_for_photos_again(field) -> None:
    """A form sent back with errors loses its chosen files: say so when some were chosen."""
    if any(f.filename for f in request.files.getlist(field.name)) and not field.errors:
        field.errors = [_("Please choose the photos again.")]


def _new_report(form: ReportForm) -> workflow.NewReport:
    return workflow.NewReport(
        hazard_type=form.hazard_type.data,
        building_id=form.building.data,
        unit=form.unit.data,
        floor=form.floor.data,
        spot=form.spot.data or "",
        description=form.description.data or "",
        contact=form.contact.data or "",
        plate=form.plate.data or "",
    )


@bp.route("/report", methods=["GET", "POST"])
@bp.route("/report/b/<int:building_id>", methods=["GET", "POST"])
@limiter.limit(REPORT_LIMITS, methods=["POST"])
@limiter.limit(
    REPORTER_LIMITS, methods=["POST"], key_func=_reporter_key, exempt_when=_anonymous_without_contact
)
def report(building_id: int | None = None):
    """Report a fire hazard: anyone, anonymous allowed; answers with a tracking link."""
    form = _report_form(building_id)
    if form.validate_on_submit():
        photos = _clean_uploads(form.photos)
        if photos is not None:
            case = workflow.file_report(
                _new_report(form),
                photos,
                reporter_id=current_user.id if current_user.is_authenticated else None,
            )
            flash(
                _("Thank you. Your report was received. Keep this page's address to follow the case."), "ok"
            )
            return redirect(url_for(".track", token=case.tracking_token), code=303)
    elif request.method == "POST":
        _ask_for_photos_again(form.photos)
    status = 400 if request.method == "POST" else 200
    similar = workflow.similar_open_cases(
        form.building.data if isinstance(form.building.data, int) else None, form.unit.data, form.floor.data
    )
    return render_template(
        "safety/report.html",
        form=form,
        similar=similar,
        max_mb=uploads.MAX_PHOTO_BYTES // (1024 * 1024),
        response_hours=_response_hours(),
    ), status


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(error):
    """An upload over the request limit: say so on the form (the photos must be chosen again)."""
    if request.endpoint == "safety.report":
        form = _report_form(None, blank=True)
        form.photos.errors = [_("The photos are too large together. Choose fewer or smaller photos.")]
        return render_template(
            "safety/report.html",
            form=form,
            similar=[],
            max_mb=uploads.MAX_PHOTO_BYTES // (1024 * 1024),
            response_hours=_response_hours(),
        ), 413
    return render_template("error.html", error=error), 413


@bp.get("/report/similar")
def similar():
    """The duplicate hint for the report form (htmx): open cases at the same place."""
    building_id = request.args.get("building", type=int)
    cases = workflow.similar_open_cases(
        building_id, request.args.get("unit", type=int), request.args.get("floor", type=int)
    )
    return render_page_or_partial("safety/similar_page.html", "safety/_similar.html", similar=cases)


def _case_by_token_or_404(token: str) -> HazardCase:
    case = workflow.find_by_token(token)
    if case is None:
        abort(404)
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
    photos = [p for p in case.photos if p.kind == PHOTO_REPORT]
    response = current_app.make_response(
        render_template(
            "safety/track.html",
            case=case,
            steps=steps,
            photos=photos,
            response_hours=_response_hours(),
            tracking_url=_public_url(".track", token=case.tracking_token),
        )
    )
    return _private(response)


@bp.get("/report/t/<token>/photos/<int:photo_id>")
@bp.get("/report/t/<token>/photos/<int:photo_id>/<any(thumb):size>")
def track_photo(token: str, photo_id: int, size: str | None = None):
    """A photo the reporter sent, through the tracking link only."""
    case = _case_by_token_or_404(token)
    photo = db.session.get(CasePhoto, photo_id)
    if photo is None or photo.case_id != case.id or photo.kind != PHOTO_REPORT:
        abort(404)
    return _private(_send_photo(photo, size == "thumb"))


def _send_photo(photo: CasePhoto, thumb: bool):
    try:
        response = send_file(
            uploads.photo_path(photo.stored_name, thumb), mimetype="image/jpeg", max_age=0, conditional=True
        )
    except (FileNotFoundError, ValueError):
        abort(404)
    response.headers["Cache-Control"] = "private, max-age=3600"
    response.headers["Content-Disposition"] = f'inline; filename="case-{photo.case_id}-{photo.id}.jpg"'
    return response


# --- Staff: cases ---------------------------------------------------------------------------------------


def _site_or_default() -> Site:
    """The site chosen with ?site=, else the first the user may see."""
    site_id = request.args.get("site", type=int)
    if site_id:
        return get_site_or_404(current_user, site_id)
    sites = visible_sites(current_user)
    if not sites:
        abort(404)
    return sites[0]


@bp.get("/safety/cases")
@staff_required(*SAFETY_ROLES)
def cases():
    """Cases, oldest open first, filtered by state, building and hazard type."""
    now = clock_now()
    shown = request.args.get("show", "open")
    shown = shown if shown in LIST_FILTERS else "open"
    building = request.args.get("building", type=int)
    hazard = request.args.get("type", "")
    page = max(1, request.args.get("page", 1, type=int) or 1)
    query = case_scope(current_user, select(HazardCase)).options(
        selectinload(HazardCase.building), selectinload(HazardCase.photos)
    )
    if shown == "open":
        query = query.where(HazardCase.state != CLOSED).order_by(HazardCase.created_at)
    elif shown == "overdue":
        query = query.where(HazardCase.state == DEADLINE_SET, HazardCase.deadline_at < now).order_by(
            HazardCase.deadline_at
        )
    elif shown == "awaiting":
        query = query.where(
            HazardCase.state == REPORTED, HazardCase.created_at < now - timedelta(hours=_response_hours())
        ).order_by(HazardCase.created_at)
    elif shown == "closed":
        query = query.where(HazardCase.state == CLOSED).order_by(HazardCase.closed_at.desc())
    else:
        query = query.order_by(HazardCase.created_at.desc())
    if building:
        query = query.join(Building, Building.id == HazardCase.building_id).where(Building.number == building)
    if hazard in HAZARD_TYPES:
        query = query.where(HazardCase.hazard_type == hazard)
    rows = list(db.session.execute(query.offset((page - 1) * CASES_PAGE).limit(CASES_PAGE + 1)).scalars())
    repeat = workflow.repeat_counts([c.bike_id for c in rows if c.bike_id])
    buildings = sorted(
        set(
            db.session.execute(
                case_scope(
                    current_user,
                    select(Building.number)
                    .select_from(HazardCase)
                    .join(Building, Building.id == HazardCase.building_id),
                )
            ).scalars()
        )
    )
    return render_page_or_partial(
        "safety/cases.html",
        "safety/_case_list.html",
        cases=rows[:CASES_PAGE],
        has_more=len(rows) > CASES_PAGE,
        page_no=page,
        shown=shown,
        building=building,
        hazard=hazard,
        buildings=buildings,
        repeat=repeat,
        now=now,
        can_write=current_user.role in SAFETY_WRITE_ROLES,
    )


@bp.route("/safety/cases/new", methods=["GET", "POST"])
@staff_required(*SAFETY_WRITE_ROLES)
def new_case():
    """A case found on patrol, filed by staff (attributed to them)."""
    form = _report_form(request.args.get("building", type=int), {s.id for s in visible_sites(current_user)})
    if form.validate_on_submit():
        photos = _clean_uploads(form.photos)
        if photos is not None:
            case = workflow.file_report(
                _new_report(form), photos, actor_id=current_user.id, source=SOURCE_PATROL
            )
            flash(_("Case #%(id)s opened.", id=case.id), "ok")
            return redirect(url_for(".case", case_id=case.id), code=303)
    elif request.method == "POST":
        _ask_for_photos_again(form.photos)
    return render_template(
        "safety/new_case.html", form=form, similar=[], max_mb=uploads.MAX_PHOTO_BYTES // (1024 * 1024)
    ), 400 if request.method == "POST" else 200


def _case_context(case: HazardCase, forms: dict | None = None, error: str | None = None) -> dict:
    now = clock_now()
    personal = sees_personal_data(current_user)
    can_write = current_user.role in SAFETY_WRITE_ROLES
    actions = workflow.allowed_actions(case) if can_write else []
    forms = forms or {}
    for action in actions:
        forms.setdefault(action, StepForm(prefix=action, formdata=None))
    record = workflow.owner_record(case) if personal else None
    suggested = None
    if personal and case.bike_id is None and case.reported_plate:
        suggested = workflow.find_bike(case.reported_plate)
    sheds = case.building.site.sheds
    return dict(
        case=case,
        now=now,
        personal=personal,
        can_write=can_write,
        actions=actions,
        forms=forms,
        note_form=forms.get("note") or StepForm(prefix="note", formdata=None),
        bike_form=forms.get("bike") or LinkBikeForm(formdata=None),
        record=record,
        suggested=suggested,
        similar=workflow.similar_open_cases(case.building_id, case.unit, case.floor, exclude_id=case.id),
        nudge=_nudge_text(case, sheds, record),
        error=error,
        overdue=case.is_overdue(now),
        tracking_url=_public_url(".track", token=case.tracking_token) if personal else None,
        move_ready=case.reminder_count >= workflow.MIN_REMINDERS_BEFORE_MOVE,
        min_reminders=workflow.MIN_REMINDERS_BEFORE_MOVE,
    )


def _nudge_text(case: HazardCase, sheds, record) -> str:
    """A friendly message staff can send the owner: where the sheds are, and help with a first charge."""
    places = "; ".join(f"{s.name}（{s.location}）" if s.location else s.name for s in sheds)
    text = _(
        "Hello from the property office. At %(place)s we found: %(hazard)s. Charging or parking e-bikes "
        "in corridors, stairwells and lobbies is a fire hazard and not allowed. Please charge in the "
        "charging shed: %(sheds)s. Scan the code on a free port and pay from your wallet.",
        place=labels.case_location(case, with_spot=False),
        hazard=labels.HAZARD_LABELS[case.hazard_type],
        sheds=places or "–",
    )
    if record is None or record.never_charged:
        text += " " + _("First time in the shed? Tell us and a patrol will help you with your first charge.")
    return text


@bp.get("/safety/cases/<int:case_id>")
@staff_required(*SAFETY_ROLES)
def case(case_id: int):
    """One case: place, photos, bike and owner, the step log, and the next steps."""
    found = get_case_or_404(current_user, case_id)
    return render_template("safety/case.html", **_case_context(found))


@bp.post("/safety/cases/<int:case_id>/step/<action>")
@staff_required(*SAFETY_WRITE_ROLES)
def step(case_id: int, action: str):
    """Take one workflow step; an impossible or incomplete step is refused with a message."""
    found = get_case_or_404(current_user, case_id)
    if action not in workflow.RULES or action == workflow.LINK_BIKE:
        abort(404)
    form = StepForm(prefix=action)
    if not form.validate_on_submit():
        return render_template("safety/case.html", **_case_context(found, {action: form})), 400
    photo = None
    if action in (workflow.RECTIFY, workflow.VERIFY):
        photos = _clean_uploads(form.photo, max_photos=1)
        if photos is None:
            return render_template("safety/case.html", **_case_context(found, {action: form})), 400
        photo = photos[0] if photos else None
    duplicate_of = None
    if action == workflow.DUPLICATE and form.duplicate_of.data:
        duplicate_of = db.session.execute(
            case_scope(current_user, select(HazardCase).where(HazardCase.id == form.duplicate_of.data))
        ).scalar_one_or_none()
    deadline_at = stats.local_end_of_day_utc(form.deadline.data) if form.deadline.data else None
    try:
        workflow.act(
            found,
            action,
            current_user.id,
            note=form.note.data or "",
            channel=form.channel.data,
            target=form.authority.data if action == workflow.ESCALATE else form.destination.data,
            deadline_at=deadline_at,
            photo=photo,
            duplicate_of=duplicate_of,
            first_charge_offered=form.first_charge_offered.data,
        )
    except workflow.WorkflowError as refused:
        db.session.rollback()
        found = get_case_or_404(current_user, case_id)
        status = 409 if refused.code in ("state", "changed", "reminders") else 400
        return render_template(
            "safety/case.html", **_case_context(found, {action: form}, refused.message)
        ), status
    flash(_("Saved: %(step)s.", step=labels.ACTION_LABELS[action]), "ok")
    return redirect(url_for(".case", case_id=found.id), code=303)


@bp.post("/safety/cases/<int:case_id>/bike")
@staff_required(*SAFETY_WRITE_ROLES)
def link_bike(case_id: int):
    """Link the case to a registered bike by plate (plate → owner → unit)."""
    found = get_case_or_404(current_user, case_id)
    form = LinkBikeForm()
    if form.validate_on_submit():
        try:
            workflow.link_bike(found, form.plate.data, current_user.id)
        except workflow.WorkflowError as refused:
            form.plate.errors = [refused.message]
        else:
            flash(_("Bike linked."), "ok")
            return redirect(url_for(".case", case_id=found.id), code=303)
    return render_template("safety/case.html", **_case_context(found, {"bike": form})), 400


@bp.get("/safety/photos/<int:photo_id>")
@bp.get("/safety/photos/<int:photo_id>/<any(thumb):size>")
@staff_required(*SAFETY_ROLES)
def photo(photo_id: int, size: str | None = None):
    """A case photo, for staff of that compound only."""
    return _send_photo(get_photo_or_404(current_user, photo_id), size == "thumb")


# --- Staff: incidents from the ports --------------------------------------------------------------------


@bp.get("/safety/incidents")
@staff_required(*SAFETY_ROLES)
def incident_list():
    """Open incidents from the charging ports, then the latest closed ones."""
    return _incident_page()


def _incident_page(forms: dict | None = None, status: int = 200):
    base = incident_scope(current_user, select(Incident)).options(selectinload(Incident.occurrences_log))
    open_rows = list(
        db.session.execute(base.where(Incident.state == INCIDENT_OPEN).order_by(Incident.opened_at)).scalars()
    )
    closed_rows = list(
        db.session.execute(
            base.where(Incident.state != INCIDENT_OPEN).order_by(Incident.closed_at.desc()).limit(30)
        ).scalars()
    )
    forms = forms or {}
    for incident in open_rows:
        forms.setdefault(incident.id, IncidentCloseForm(formdata=None, prefix=f"i{incident.id}"))
    return render_template(
        "safety/incidents.html",
        open_incidents=open_rows,
        closed_incidents=closed_rows,
        forms=forms,
        can_write=current_user.role in SAFETY_WRITE_ROLES,
    ), status


@bp.post("/safety/incidents/<int:incident_id>/close")
@staff_required(*SAFETY_WRITE_ROLES)
def close_incident(incident_id: int):
    """Close an incident with what was checked or repaired."""
    incident = get_incident_or_404(current_user, incident_id)
    form = IncidentCloseForm(prefix=f"i{incident.id}")
    if form.validate_on_submit():
        try:
            incidents.close_incident(incident, current_user.id, form.resolution.data)
        except incidents.IncidentError as refused:
            form.resolution.errors = [refused.message]
        else:
            flash(_("Incident closed."), "ok")
            return redirect(url_for(".incident_list"), code=303)
    return _incident_page({incident.id: form}, 409 if incident.state != INCIDENT_OPEN else 400)


# --- Staff: the effect ----------------------------------------------------------------------------------


@bp.get("/safety/dashboard")
@staff_required(*SAFETY_ROLES)
def dashboard():
    """Open cases by age and building, overdue deadlines, time to close, the weekly trend."""
    site = _site_or_default()
    now = clock_now()
    trend = stats.weekly_trend(site.id, now)
    today = stats.local_today(now)
    last_month = today.replace(day=1) - timedelta(days=1)
    open_incidents = db.session.execute(
        incident_scope(current_user, select(func.count(Incident.id))).where(Incident.state == INCIDENT_OPEN)
    ).scalar_one()
    return render_template(
        "safety/dashboard.html",
        site=site,
        sites=visible_sites(current_user),
        now=now,
        rows=stats.open_by_age_and_building(site.id, now),
        buckets=stats.AGE_BUCKETS,
        overdue=stats.overdue_cases(site.id, now),
        awaiting=stats.awaiting_first_check(site.id, now, _response_hours()),
        median_90=stats.median_hours_to_close(site.id, now - timedelta(days=90), None),
        median_all=stats.median_hours_to_close(site.id),
        trend=trend,
        open_incidents=open_incidents,
        months=[(today.year, today.month), (last_month.year, last_month.month)],
        response_hours=_response_hours(),
    )


@bp.get("/safety/dashboard/trend.svg")
@staff_required(*SAFETY_ROLES)
def trend_svg():
    """The weekly trend chart (SVG): reports per building under the sheds' utilisation."""
    site = _site_or_default()
    trend = stats.weekly_trend(site.id, clock_now())
    body = charts.trend_svg(
        trend,
        title=_("Hazard reports per building and week, under shed utilisation"),
        utilisation_label=_("Shed utilisation: percent of port time spent charging"),
        building_label=labels.building_name,
        no_reports_label=_("No hazard reports."),
    )
    return current_app.response_class(
        body, mimetype="image/svg+xml", headers={"Cache-Control": "private, max-age=300"}
    )


@bp.get("/safety/summary.pdf")
@staff_required(*SAFETY_ROLES)
def summary_pdf():
    """The monthly safety summary for the owners' committee (?month=YYYY-MM, default this month)."""
    site = _site_or_default()
    now = clock_now()
    month = request.args.get("month", "")
    match = re.fullmatch(r"(\d{4})-(\d{2})", month)
    today = stats.local_today(now)
    year, number = (int(match[1]), int(match[2])) if match else (today.year, today.month)
    if not (1 <= number <= 12 and 2000 <= year <= today.year + 1) or date(year, number, 1) > today:
        abort(404)
    figures = stats.month_summary(site.id, year, number, now)
    body = summary.render_pdf(figures, site.name, now)
    return current_app.response_class(
        body,
        mimetype="application/pdf",
        headers={
            "Content-Disposition": f'inline; filename="safety-{year}-{number:02d}.pdf"',
            "Cache-Control": "private, no-store",
        },
    )


@bp.get("/safety/notices")
@staff_required(*SAFETY_ROLES)
def notices():
    """Printable notices with each building's report QR code."""
    site = _site_or_default()
    buildings = [(b, _public_url(".report", building_id=b.id)) for b in site.buildings]
    return render_template(
        "safety/notices.html", site=site, sites=visible_sites(current_user), buildings=buildings
    )


@bp.get("/safety/buildings/<int:building_id>/qr.<any(svg, png):fmt>")
@staff_required(*SAFETY_ROLES)
def building_qr(building_id: int, fmt: str):
    """A building's report QR code (encodes PUBLIC_BASE_URL/report/b/<id>, never the request host)."""
    building = get_building_or_404(current_user, building_id)
    target = _public_url(".report", building_id=building.id)
    if fmt == "svg":
        return current_app.response_class(
            qr.qr_svg(target), mimetype="image/svg+xml", headers={"Cache-Control": "private, max-age=86400"}
        )
    return current_app.response_class(
        qr.qr_png(target), mimetype="image/png", headers={"Cache-Control": "private, max-age=86400"}
    )
