"""Back office for the property manager: occupancy, usage, ports, QR stickers, alerts."""

from __future__ import annotations

from datetime import timedelta

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select
from wtforms.fields.choices import SelectChoice

from chargeshed.accounts.access import (
    MANAGE_ROLES,
    SHED_ADMIN_ROLES,
    get_port_or_404,
    get_shed_or_404,
    get_site_or_404,
    visible_port_ids,
    visible_shed_ids,
    visible_sites,
)
from chargeshed.accounts.models import ROLE_ADMIN, ROLE_OPERATOR_STAFF
from chargeshed.charging import occupancy, port_admin, usage
from chargeshed.charging import sessions as charging
from chargeshed.charging.access import get_alert_or_404
from chargeshed.charging.models import ChargeSession
from chargeshed.charging.port_state import port_state_now
from chargeshed.extensions import db
from chargeshed.htmx import is_partial, render_page_or_partial
from chargeshed.money.format import format_fen
from chargeshed.ports import alerts as port_alerts
from chargeshed.ports.models import PortEvent
from chargeshed.sites import admin, charts
from chargeshed.sites.models import Port, Shed, Site
from chargeshed.sites.stickers import sticker_sheet_pdf
from chargeshed.timeutil import now as clock_now
from chargeshed.web.access import staff_required
from chargeshed.web.forms import ActionForm
from chargeshed.web.hardware import port_hardware
from chargeshed.web.jinja import END_REASONS, SESSION_STATES
from chargeshed.web.manage_forms import (
    MaintenanceForm,
    NewShedForm,
    PortNumbersForm,
    RangeForm,
    RenamePortForm,
    SessionFilterForm,
    ShedForm,
    StaffStopForm,
)

bp = Blueprint("manage", __name__, url_prefix="/manage")

EVENT_KINDS = {
    "fault": _l("Fault"),
    "fault_cleared": _l("Fault cleared"),
    "offline": _l("Went offline"),
    "online": _l("Back online"),
    "maintenance_on": _l("Put under maintenance"),
    "maintenance_off": _l("Back in service"),
    "retired": _l("Retired"),
    "renamed": _l("Label changed"),
    "staff_stop": _l("Charge stopped by staff"),
}
ALERT_KINDS = {"offline": _l("Offline"), "fault": _l("Fault")}
# End reasons as staff read them (the resident's "Stopped by you" is the resident here).
STAFF_END_REASONS = {**END_REASONS, "user_stop": _l("Stopped by the resident")}
PORT_STATUSES = {"active": _l("In service"), "maintenance": _l("Under maintenance"), "retired": _l("Retired")}
# What the device itself last reported (OCPP 1.6 connector states plus our debounced Offline), in words.
HARDWARE_STATES = {
    "Available": _l("Nothing plugged in"),
    "Preparing": _l("Plugged in, not yet switched on"),
    "Charging": _l("Power on"),
    "SuspendedEV": _l("Power on, the bike draws nothing"),
    "SuspendedEVSE": _l("Paused by the port"),
    "Finishing": _l("Power off, bike still plugged in"),
    "Faulted": _l("Fault"),
    "Unavailable": _l("Switched off (out of service)"),
    "Offline": _l("Not answering"),
}

POLL_SECONDS = 10
# Sheds per page of the occupancy grid (about 200 ports at 20 a shed).
SHEDS_PER_PAGE = 10
PAGE_SIZE = 50
DEFAULT_RANGE_DAYS = 28
MAX_RANGE_DAYS = 366


@bp.context_processor
def _labels() -> dict:
    return dict(
        EVENT_KINDS=EVENT_KINDS,
        ALERT_KINDS=ALERT_KINDS,
        PORT_STATUSES=PORT_STATUSES,
        HARDWARE_STATES=HARDWARE_STATES,
        STAFF_END_REASONS=STAFF_END_REASONS,
        mask_login=usage.mask_login,
    )


def _who() -> str:
    return current_user.display_name or current_user.login


def _refusal(refused: admin.Refused) -> str:
    numbers = ", ".join(str(n) for n in refused.numbers)
    return {
        "numbers_missing": _("Enter the numbers of the new ports."),
        "numbers_format": _("Write numbers and ranges like 1-12, 15, 20-24."),
        "numbers_range": _("Port numbers go from 1 to %(max)s.", max=admin.MAX_PORT_NUMBER),
        "numbers_too_many": _("Add at most %(max)s ports at a time.", max=admin.MAX_PORTS_PER_REQUEST),
        "numbers_repeated": _("These numbers are listed twice: %(numbers)s.", numbers=numbers),
        "numbers_taken": _(
            "This shed already has ports numbered %(numbers)s (retired ports keep their number). Nothing was added.",
            numbers=numbers,
        ),
        "conflict": _("Someone changed this shed at the same moment. Nothing was saved; please try again."),
        "name_missing": _("Enter the shed's name."),
        "name_taken": _("This site already has a shed with that name."),
        "choice_invalid": _("Choose an operator and a tariff from the lists."),
        "busy": _("A charge is running on this port. Stop it first or wait until it ends."),
        "retired": _("This port is retired."),
    }.get(refused.code, _("That change was not possible."))


# Landing and live occupancy ---------------------------------------------------------------------


@bp.get("/")
@staff_required(*MANAGE_ROLES)
def index():
    """The sites this person looks after; straight to the occupancy grid when there is one."""
    sites = visible_sites(current_user)
    if len(sites) == 1:
        return redirect(url_for(".occupancy_page", site_id=sites[0].id))
    return render_template("manage/index.html", sites=sites)


def _grid_args() -> tuple[int, int | None]:
    """The grid's page and shed filter from the query string (?page=2, ?shed=7)."""
    return max(1, request.args.get("page", 1, type=int) or 1), request.args.get("shed", type=int)


def _grid_context(site: Site) -> dict:
    now = clock_now()
    page, only_shed = _grid_args()
    pager = occupancy.shed_page(visible_shed_ids(current_user, site.id), page, SHEDS_PER_PAGE, only_shed)
    blocks = occupancy.occupancy(pager.shed_ids, now)
    # Translated once and formatted per cell: the grid may have thousands of ports.
    hours_minutes = _("%(h)s h %(m)s min")  # no variables given: returned unformatted
    return dict(
        site=site,
        blocks=blocks,
        totals=occupancy.totals(blocks),
        now=now,
        poll_seconds=POLL_SECONDS,
        hours_minutes=hours_minutes,
        pager=pager,
        only_shed=only_shed,
        open_alerts=port_alerts.unacknowledged_open_count(visible_port_ids(current_user, site.id)),
    )


@bp.get("/sites/<int:site_id>")
@staff_required(*MANAGE_ROLES)
def occupancy_page(site_id: int):
    """Every shed of a site with its ports' live state; the grid refreshes itself."""
    site = get_site_or_404(current_user, site_id)
    return render_template("manage/occupancy.html", **_grid_context(site))


@bp.get("/sites/<int:site_id>/grid")
@staff_required(*MANAGE_ROLES)
def occupancy_grid(site_id: int):
    """The grid alone, for polling: 304 Not Modified, without rendering, while nothing changed."""
    site = get_site_or_404(current_user, site_id)
    version = occupancy.grid_version(
        site.id, clock_now(), str(get_locale()), current_user.id, is_partial(), *_grid_args()
    )
    if version is not None and version in request.if_none_match:
        response = current_app.response_class(status=304)
    else:
        response = render_page_or_partial("manage/occupancy.html", "manage/_grid.html", **_grid_context(site))
    if version is not None:
        response.set_etag(version)
    response.headers["Cache-Control"] = "private, no-cache"
    response.vary.add("HX-Request")
    response.vary.add("Cookie")
    return response


# One port ---------------------------------------------------------------------------------------


def _port_page(port: Port, status: int = 200, **forms):
    now = clock_now()
    live = charging.live_session_on_port(port.id)
    recent = (
        db.session.execute(
            select(ChargeSession).where(ChargeSession.port_id == port.id).order_by(ChargeSession.id.desc()).limit(15)
        )
        .scalars()
        .all()
    )
    events = (
        db.session.execute(
            select(PortEvent)
            .where(PortEvent.port_id == port.id)
            .order_by(PortEvent.at.desc(), PortEvent.id.desc())
            .limit(30)
        )
        .scalars()
        .all()
    )
    port_alert_rows = (
        db.session.execute(port_alerts.alerts_query(select(Port.id).where(Port.id == port.id)).limit(10))
        .scalars()
        .all()
    )
    forms.setdefault("stop_form", StaffStopForm())
    forms.setdefault("rename_form", RenamePortForm(label=port.label))
    return render_template(
        "manage/port.html",
        port=port,
        shed=port.shed,
        live=live,
        now=now,
        state=port_state_now(port, live, now),
        cost=charging.cost_now(live, now) if live else 0,
        recent=recent,
        events=events,
        alerts=port_alert_rows,
        action_form=ActionForm(),
        mask=current_user.role == ROLE_OPERATOR_STAFF,
        hardware=port_hardware(port),
        **forms,
    ), status


@bp.get("/ports/<int:port_id>")
@staff_required(*MANAGE_ROLES)
def port_page(port_id: int):
    """A port: its charge now, its last charges, its events and alerts, and staff actions."""
    return _port_page(get_port_or_404(current_user, port_id))


@bp.post("/ports/<int:port_id>/maintenance")
@staff_required(*MANAGE_ROLES)
def port_maintenance(port_id: int):
    """Put a port in maintenance (residents cannot start there) or back in service."""
    port = get_port_or_404(current_user, port_id)
    form = MaintenanceForm()
    if not form.validate_on_submit():
        abort(400)
    on = form.mode.data == "on"
    try:
        changed = port_admin.set_maintenance(port, on, _who(), clock_now(), actor_id=current_user.id)
        db.session.commit()
    except admin.Refused as refused:
        flash(_refusal(refused), "error")
    else:
        if changed:
            flash(
                _("Port %(n)s is now under maintenance.", n=port.number)
                if on
                else _("Port %(n)s is back in service.", n=port.number),
                "ok",
            )
    return redirect(url_for(".port_page", port_id=port.id))


@bp.post("/ports/<int:port_id>/stop")
@staff_required(*MANAGE_ROLES)
def port_stop(port_id: int):
    """Stop the charge on this port as staff, with a reason; the resident pays only what was used."""
    port = get_port_or_404(current_user, port_id)
    form = StaffStopForm()
    if not form.validate_on_submit():
        return _port_page(port, 400, stop_form=form)
    stopped = port_admin.staff_stop(port, _who(), form.reason.data, clock_now(), actor_id=current_user.id)
    db.session.commit()
    if stopped:
        flash(_("The charge was stopped and settled."), "ok")
    else:
        flash(_("No charge was running on this port."), "error")
    return redirect(url_for(".port_page", port_id=port.id))


@bp.post("/ports/<int:port_id>/rename")
@staff_required(*MANAGE_ROLES)
def port_rename(port_id: int):
    """Change the label shown under the port number."""
    port = get_port_or_404(current_user, port_id)
    form = RenamePortForm()
    if not form.validate_on_submit():
        return _port_page(port, 400, rename_form=form)
    try:
        port_admin.rename_port(port, form.label.data or "", _who(), clock_now(), actor_id=current_user.id)
        db.session.commit()
    except admin.Refused as refused:
        flash(_refusal(refused), "error")
    else:
        flash(_("Label saved."), "ok")
    return redirect(url_for(".port_page", port_id=port.id))


@bp.post("/ports/<int:port_id>/retire")
@staff_required(*MANAGE_ROLES)
def port_retire(port_id: int):
    """Take a port out of use for good; its history stays."""
    port = get_port_or_404(current_user, port_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        retired = port_admin.retire_port(port, _who(), clock_now(), actor_id=current_user.id)
        db.session.commit()
        if retired:
            flash(_("Port %(n)s is retired. Its history is kept.", n=port.number), "ok")
    except admin.Refused as refused:
        flash(_refusal(refused), "error")
    return redirect(url_for(".port_page", port_id=port.id))


# Sheds ------------------------------------------------------------------------------------------


def _shed_page(shed: Shed, status: int = 200, **forms):
    ports = db.session.execute(select(Port).where(Port.shed_id == shed.id).order_by(Port.number)).scalars().all()
    forms.setdefault("shed_form", ShedForm(obj=shed))
    forms.setdefault("ports_form", PortNumbersForm())
    return render_template(
        "manage/shed.html", shed=shed, ports=ports, can_edit=current_user.role in SHED_ADMIN_ROLES, **forms
    ), status


@bp.get("/sheds/<int:shed_id>")
@staff_required(*MANAGE_ROLES)
def shed_page(shed_id: int):
    """A shed's ports (retired ones too), adding ports, renaming, the sticker sheet."""
    return _shed_page(get_shed_or_404(current_user, shed_id))


@bp.post("/sheds/<int:shed_id>")
@staff_required(*SHED_ADMIN_ROLES)
def shed_edit(shed_id: int):
    """Rename a shed or change its location."""
    shed = get_shed_or_404(current_user, shed_id)
    form = ShedForm()
    if form.validate_on_submit():
        try:
            admin.update_shed(shed, form.name.data, form.location.data or "")
        except admin.Refused as refused:
            form.name.errors.append(_refusal(refused))
        else:
            db.session.commit()
            flash(_("Shed saved."), "ok")
            return redirect(url_for(".shed_page", shed_id=shed.id))
    db.session.refresh(shed)
    return _shed_page(shed, 400, shed_form=form)


@bp.post("/sheds/<int:shed_id>/ports")
@staff_required(*MANAGE_ROLES)
def shed_add_ports(shed_id: int):
    """Add several ports at once; a taken or repeated number refuses the whole batch."""
    shed = get_shed_or_404(current_user, shed_id)
    form = PortNumbersForm()
    if form.validate_on_submit():
        try:
            added = admin.add_ports(shed, admin.parse_port_numbers(form.numbers.data), clock_now())
        except admin.Refused as refused:
            form.numbers.errors.append(_refusal(refused))
        else:
            db.session.commit()
            flash(_("%(count)s ports added. Print their stickers below.", count=len(added)), "ok")
            return redirect(url_for(".shed_page", shed_id=shed.id))
    return _shed_page(shed, 400, ports_form=form)


@bp.get("/sheds/<int:shed_id>/stickers.pdf")
@staff_required(*MANAGE_ROLES)
def shed_stickers(shed_id: int):
    """The shed's QR sticker sheet (A4 PDF)."""
    shed = get_shed_or_404(current_user, shed_id)
    pdf = sticker_sheet_pdf(shed, current_app.config["PUBLIC_BASE_URL"])
    return Response(
        pdf,
        mimetype="application/pdf",
        headers={"Content-Disposition": f'inline; filename="stickers-shed-{shed.id}.pdf"'},
    )


@bp.route("/sites/<int:site_id>/sheds/new", methods=["GET", "POST"])
@staff_required(*SHED_ADMIN_ROLES)
def shed_new(site_id: int):
    """Add a shed to a site, with its first ports."""
    site = get_site_or_404(current_user, site_id)
    form = NewShedForm()
    any_operator = current_user.role == ROLE_ADMIN
    operators, tariffs = admin.shed_choices(site, any_operator=any_operator)
    form.operator_id.choices = [SelectChoice(i, name) for i, name in operators]
    form.tariff_id.choices = [SelectChoice(i, name) for i, name in tariffs]
    if form.validate_on_submit():
        try:
            numbers = admin.parse_port_numbers(form.numbers.data)
            shed = admin.add_shed(
                site,
                form.name.data,
                form.location.data or "",
                form.operator_id.data,
                form.tariff_id.data,
                numbers,
                clock_now(),
                any_operator=any_operator,
            )
        except admin.Refused as refused:
            field = form.numbers if refused.code.startswith("numbers") else form.name
            field.errors.append(_refusal(refused))
        else:
            db.session.commit()
            flash(_("Shed added. Print its QR stickers below."), "ok")
            return redirect(url_for(".shed_page", shed_id=shed.id))
    status = 400 if form.errors else 200
    return render_template("manage/shed_new.html", site=site, form=form), status


# Alerts -----------------------------------------------------------------------------------------


@bp.get("/alerts")
@staff_required(*MANAGE_ROLES)
def alerts_page():
    """Offline and fault alerts: open ones first, with when they were raised, cleared and seen."""
    show_all = request.args.get("show") == "all"
    page = max(1, request.args.get("page", 1, type=int) or 1)
    query = port_alerts.alerts_query(visible_port_ids(current_user), open_only=not show_all)
    rows, has_more = usage.page_of(query, page, PAGE_SIZE)
    return render_template(
        "manage/alerts.html",
        alerts=[row[0] for row in rows],
        show_all=show_all,
        page=page,
        has_more=has_more,
        form=ActionForm(),
        now=clock_now(),
    )


@bp.post("/alerts/<int:alert_id>/ack")
@staff_required(*MANAGE_ROLES)
def alert_ack(alert_id: int):
    """Record that this person has seen the alert and is on it."""
    alert = get_alert_or_404(current_user, alert_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    if port_alerts.acknowledge(alert, current_user.id, clock_now()):
        flash(_("Alert acknowledged."), "ok")
    back = request.form.get("back", "")
    return redirect(back if back.startswith("/manage/") else url_for(".alerts_page"))


# Usage ------------------------------------------------------------------------------------------


def _shed_choices(all_label: str) -> list[SelectChoice]:
    rows = db.session.execute(
        select(Shed.id, Shed.name, Site.name)
        .join(Site, Site.id == Shed.site_id)
        .where(Shed.id.in_(visible_shed_ids(current_user)))
        .order_by(Site.name, Shed.name, Shed.id)
    ).all()
    several_sites = len({site for _, _, site in rows}) > 1
    return [SelectChoice(0, all_label)] + [
        SelectChoice(i, f"{site} · {name}" if several_sites else name) for i, name, site in rows
    ]


def _session_filters() -> tuple[SessionFilterForm, usage.SessionFilter | None]:
    form = SessionFilterForm(formdata=request.args)
    form.shed.choices = _shed_choices(_("All sheds"))
    form.reason.choices = [SelectChoice("", _("Any"))] + [
        SelectChoice(key, str(label)) for key, label in STAFF_END_REASONS.items()
    ]
    if request.args and not form.validate():
        return form, None
    return form, usage.SessionFilter(
        shed_id=form.shed.data or None,
        port_number=form.port.data,
        resident=(form.resident.data or "").strip(),
        date_from=form.date_from.data,
        date_to=form.date_to.data,
        end_reason=form.reason.data or "",
    )


@bp.get("/sessions")
@staff_required(*MANAGE_ROLES)
def sessions_page():
    """Charge sessions with filters and pages; the same filters export to CSV."""
    form, filters = _session_filters()
    page = max(1, request.args.get("page", 1, type=int) or 1)
    rows, has_more, total = [], False, 0
    if filters is not None:
        query = usage.sessions_query(visible_shed_ids(current_user), filters)
        rows, has_more = usage.page_of(query, page, PAGE_SIZE)
        total = usage.count_sessions(query)
    args = {k: v for k, v in request.args.items() if k != "page"}
    status = 400 if filters is None else 200
    return render_template(
        "manage/sessions.html",
        form=form,
        rows=rows,
        page=page,
        has_more=has_more,
        total=total,
        args=args,
        mask=current_user.role == ROLE_OPERATOR_STAFF,
        now=clock_now(),
        status=status,
    ), status


@bp.get("/sessions.csv")
@staff_required(*MANAGE_ROLES)
def sessions_csv():
    """The filtered sessions as CSV, streamed row batch by row batch for any date range."""
    form, filters = _session_filters()
    if filters is None:
        abort(400)
    query = usage.sessions_query(visible_shed_ids(current_user), filters)
    header = {
        "session_id": _("Session no."),
        "started_local": _("Started"),
        "ended_local": _("Ended"),
        "shed": _("Shed"),
        "port": _("Port no."),
        "resident": _("Resident"),
        "state": _("State"),
        "end_reason": _("End reason"),
        "charged_minutes": _("Minutes charged"),
        "energy_wh": _("Energy (Wh)"),
        "cost_fen": _("Cost (fen)"),
        "cost_yuan": _("Cost (yuan)"),
        "hold_fen": _("Prepaid (fen)"),
    }
    words = {code: str(label) for code, label in {**SESSION_STATES, **STAFF_END_REASONS}.items()}
    lines = usage.csv_lines(
        query, clock_now(), header=header, words=words, mask_residents=current_user.role == ROLE_OPERATOR_STAFF
    )
    stamp = clock_now().strftime("%Y%m%d-%H%M")
    return Response(
        stream_with_context(lines),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="sessions-{stamp}.csv"', "Cache-Control": "no-store"},
    )


def _weekday_names() -> list[str]:
    return [_("Mon"), _("Tue"), _("Wed"), _("Thu"), _("Fri"), _("Sat"), _("Sun")]


@bp.get("/usage")
@staff_required(*MANAGE_ROLES)
def usage_page():
    """Charts of a date range: occupancy by hour of week per shed, daily figures, end reasons, capacity."""
    form = RangeForm(formdata=request.args)
    form.shed.choices = _shed_choices(_("All sheds"))
    today = usage.local_today(clock_now())
    valid = form.validate() if request.args else True
    first = (form.date_from.data if valid else None) or today - timedelta(days=DEFAULT_RANGE_DAYS - 1)
    last = (form.date_to.data if valid else None) or today
    if valid and (last - first).days + 1 > MAX_RANGE_DAYS:
        form.date_to.errors.append(_("Choose at most %(days)s days.", days=MAX_RANGE_DAYS))
        valid = False
    if not valid:
        first, last = today - timedelta(days=DEFAULT_RANGE_DAYS - 1), today
    form.date_from.data, form.date_to.data = first, last
    scope = visible_shed_ids(current_user)
    if valid and form.shed.data:
        scope = select(Shed.id).where(Shed.id.in_(scope), Shed.id == form.shed.data)
    now = clock_now()
    days = usage.daily(scope, first, last, now)
    sheds = usage.shed_usage(scope, first, last, now)
    shares = usage.end_reason_shares(scope, first, last)
    labels = [d.day.strftime("%m-%d") for d in days]
    day_names = _weekday_names()
    figures = dict(
        utilisation=charts.bar_chart(
            [(lb, d.utilisation_pct) for lb, d in zip(labels, days, strict=True)],
            _("Utilisation per day (share of port time in use)"),
            lambda v: f"{v:.0f}%",
        ),
        energy=charts.bar_chart(
            [(lb, d.energy_wh / 1000) for lb, d in zip(labels, days, strict=True)], _("Energy per day (kWh)"), _kwh
        ),
        revenue=charts.bar_chart(
            [(lb, d.revenue_fen) for lb, d in zip(labels, days, strict=True)],
            _("Charging revenue per day (¥)"),
            _yuan_axis,
        ),
        reasons=charts.share_bars(
            [(str(STAFF_END_REASONS.get(r, r)), c, p) for r, c, p in shares], _("Share of end reasons")
        ),
        heatmaps=[
            (
                s,
                charts.heatmap(
                    s.percent,
                    day_names,
                    _("%(shed)s: average share of ports in use by hour of the week (%%)", shed=s.name),
                ),
            )
            for s in sheds
        ],
        legend=charts.heat_legend(_("Colour scale")),
    )
    totals = dict(
        energy_wh=sum(d.energy_wh for d in days),
        revenue_fen=sum(d.revenue_fen for d in days),
        sessions=sum(c for _r, c, _p in shares),
        utilisation=(100 * sum(d.busy_seconds for d in days) / sum(d.port_seconds for d in days))
        if sum(d.port_seconds for d in days)
        else 0.0,
    )
    return render_template(
        "manage/usage.html",
        form=form,
        first=first,
        last=last,
        sheds=sheds,
        charts=figures,
        totals=totals,
        day_names=day_names,
    ), 200 if valid else 400


def _kwh(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def _yuan_axis(fen: float) -> str:
    """Axis and bar labels for amounts in fen: ¥0.50, ¥12, ¥1,250."""
    fen = int(round(fen))
    return f"¥{fen // 100:,}" if fen % 100 == 0 or fen >= 1000 else format_fen(fen)
