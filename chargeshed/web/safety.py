"""Fire safety for staff: the case workflow (patrol and manager), port incidents, dashboard, notices.

The public report and tracking pages are web/safety_report.py; the queries are safety/queries.py.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from chargeshed.accounts.access import (
    SAFETY_ROLES,
    SAFETY_WRITE_ROLES,
    get_site_or_404,
    visible_sites,
)
from chargeshed.extensions import db
from chargeshed.htmx import render_page_or_partial
from chargeshed.safety import charts, incidents, labels, queries, stats, summary, uploads, workflow
from chargeshed.safety import notices as notice_sheets
from chargeshed.safety.access import (
    get_building_or_404,
    get_case_or_404,
    get_incident_or_404,
    get_photo_or_404,
    sees_personal_data,
)
from chargeshed.safety.models import INCIDENT_OPEN, SOURCE_PATROL, HazardCase
from chargeshed.sites import qr
from chargeshed.sites.models import Site
from chargeshed.timeutil import now as clock_now
from chargeshed.web.access import staff_required
from chargeshed.web.safety_forms import (
    IncidentCloseForm,
    LinkBikeForm,
    StepForm,
    ask_for_photos_again,
    clean_uploads,
    new_report,
    public_url,
    report_form,
    response_hours,
    send_photo,
)

bp = Blueprint("safety", __name__)

CASES_PAGE = 50


@bp.context_processor
def _labels():
    return {"S": labels, "location": labels.case_location}


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
    filters = queries.CaseFilter.parse(
        request.args.get("show"), request.args.get("building", type=int), request.args.get("type")
    )
    page = max(1, request.args.get("page", 1, type=int) or 1)
    rows, has_more = queries.case_page(current_user, filters, now, response_hours(), page, CASES_PAGE)
    return render_page_or_partial(
        "safety/cases.html",
        "safety/_case_list.html",
        cases=rows,
        has_more=has_more,
        page_no=page,
        shown=filters.shown,
        building=filters.building_number,
        hazard=filters.hazard,
        buildings=queries.case_building_numbers(current_user),
        repeat=workflow.repeat_counts([c.bike_id for c in rows if c.bike_id]),
        now=now,
        can_write=current_user.role in SAFETY_WRITE_ROLES,
    )


@bp.route("/safety/cases/new", methods=["GET", "POST"])
@staff_required(*SAFETY_WRITE_ROLES)
def new_case():
    """A case found on patrol, filed by staff (attributed to them)."""
    sites = visible_sites(current_user)
    form = report_form(request.args.get("building", type=int), {s.id for s in sites})
    if form.validate_on_submit():
        photos = clean_uploads(form.photos)
        if photos is not None:
            case = workflow.file_report(new_report(form), photos, actor_id=current_user.id, source=SOURCE_PATROL)
            db.session.commit()
            flash(_("Case #%(id)s opened.", id=case.id), "ok")
            return redirect(url_for(".case", case_id=case.id), code=303)
    elif request.method == "POST":
        ask_for_photos_again(form.photos)
    # The live duplicate hint answers for one compound: offered when the staff member has one.
    similar_url = url_for("report.similar", site_id=sites[0].id) if len(sites) == 1 else None
    return render_template(
        "safety/new_case.html",
        form=form,
        similar=[],
        similar_url=similar_url,
        max_mb=uploads.MAX_PHOTO_BYTES // (1024 * 1024),
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
        suggested = workflow.find_bike(case.reported_plate, case.site_id)
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
        tracking_url=public_url("report.track", token=case.tracking_token) if personal else None,
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
        photos = clean_uploads(form.photo, max_photos=1)
        if photos is None:
            return render_template("safety/case.html", **_case_context(found, {action: form})), 400
        photo = photos[0] if photos else None
    duplicate_of = None
    if action == workflow.DUPLICATE and form.duplicate_of.data:
        duplicate_of = queries.visible_case(current_user, form.duplicate_of.data)
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
        return render_template("safety/case.html", **_case_context(found, {action: form}, refused.message)), status
    db.session.commit()
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
            db.session.commit()
            flash(_("Bike linked."), "ok")
            return redirect(url_for(".case", case_id=found.id), code=303)
    return render_template("safety/case.html", **_case_context(found, {"bike": form})), 400


@bp.get("/safety/photos/<int:photo_id>")
@bp.get("/safety/photos/<int:photo_id>/<any(thumb):size>")
@staff_required(*SAFETY_ROLES)
def photo(photo_id: int, size: str | None = None):
    """A case photo, for staff of that compound only."""
    return send_photo(get_photo_or_404(current_user, photo_id), size == "thumb")


# --- Staff: incidents from the ports --------------------------------------------------------------------


@bp.get("/safety/incidents")
@staff_required(*SAFETY_ROLES)
def incident_list():
    """Open incidents from the charging ports, then the latest closed ones."""
    return _incident_page()


def _incident_page(forms: dict | None = None, status: int = 200):
    open_rows, closed_rows = queries.incident_lists(current_user)
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
            db.session.commit()
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
    return render_template(
        "safety/dashboard.html",
        site=site,
        sites=visible_sites(current_user),
        now=now,
        rows=stats.open_by_age_and_building(site.id, now),
        buckets=stats.AGE_BUCKETS,
        overdue=stats.overdue_cases(site.id, now),
        awaiting=stats.awaiting_first_check(site.id, now, response_hours()),
        median_90=stats.median_hours_to_close(site.id, now - timedelta(days=90), None),
        median_all=stats.median_hours_to_close(site.id),
        trend=trend,
        open_incidents=queries.open_incident_count(current_user),
        months=[(today.year, today.month), (last_month.year, last_month.month)],
        response_hours=response_hours(),
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
    return current_app.response_class(body, mimetype="image/svg+xml", headers={"Cache-Control": "private, max-age=300"})


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
    buildings = [(b, public_url("report.new", building_id=b.id)) for b in site.buildings]
    return render_template("safety/notices.html", site=site, sites=visible_sites(current_user), buildings=buildings)


@bp.get("/safety/notices.pdf")
@staff_required(*SAFETY_ROLES)
def notices_pdf():
    """The same notices as one PDF, one A4 page per building, fonts embedded (for a print shop too)."""
    site = _site_or_default()
    sheets = [
        notice_sheets.Notice(
            f"{site.name} · {labels.building_name(b.number)}", public_url("report.new", building_id=b.id)
        )
        for b in site.buildings
    ]
    body = notice_sheets.notices_pdf(site.name, sheets)
    return current_app.response_class(
        body,
        mimetype="application/pdf",
        headers={
            "Content-Disposition": f'inline; filename="notices-{site.id}.pdf"',
            "Cache-Control": "private, no-store",
        },
    )


@bp.get("/safety/buildings/<int:building_id>/qr.<any(svg, png):fmt>")
@staff_required(*SAFETY_ROLES)
def building_qr(building_id: int, fmt: str):
    """A building's report QR code (encodes PUBLIC_BASE_URL/report/b/<id>, never the request host)."""
    building = get_building_or_404(current_user, building_id)
    target = public_url("report.new", building_id=building.id)
    if fmt == "svg":
        return current_app.response_class(
            qr.qr_svg(target), mimetype="image/svg+xml", headers={"Cache-Control": "private, max-age=86400"}
        )
    return current_app.response_class(
        qr.qr_png(target), mimetype="image/png", headers={"Cache-Control": "private, max-age=86400"}
    )
