"""Operator back office: revenue-split agreements and monthly settlement statements."""

from __future__ import annotations

from datetime import date, timedelta

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from wtforms.fields.choices import SelectChoice

from chargeshed.accounts.access import MONEY_ROLES, require_role
from chargeshed.extensions import db
from chargeshed.htmx import is_partial, make_response
from chargeshed.settlement import agreements as agreement_services
from chargeshed.settlement import statements as statement_services
from chargeshed.settlement.access import (
    AGREEMENT_WRITE_ROLES,
    ISSUE_ROLES,
    get_agreement_or_404,
    get_operator_site_or_404,
    operator_sites,
)
from chargeshed.settlement.agreements import format_bp, price_per_kwh_text
from chargeshed.settlement.document import build, cell_text, is_number, kwh_text, role_label
from chargeshed.settlement.exports import FORMATS, MIME_TYPES, statement_file
from chargeshed.settlement.models import DRAFT, ISSUED, REVIEWED
from chargeshed.settlement.periods import Period, SettlementRefused, parse_key, parse_period
from chargeshed.timeutil import now as clock_now
from chargeshed.timeutil import to_local
from chargeshed.web.access import staff_required
from chargeshed.web.forms import ActionForm
from chargeshed.web.operator_forms import AgreementForm, PeriodForm

bp = Blueprint("operator", __name__, url_prefix="/operator")


@bp.context_processor
def _helpers() -> dict:
    """Formatting helpers for this area's templates."""
    return dict(
        cell_text=cell_text,
        is_number=is_number,
        role_label=role_label,
        format_bp=format_bp,
        kwh_text=kwh_text,
        price_text=price_per_kwh_text,
        DRAFT=DRAFT,
        REVIEWED=REVIEWED,
        ISSUED=ISSUED,
    )


RECENT_MONTHS = 12


def _today() -> date:
    return to_local(clock_now()).date()


def _closed_months(count: int) -> list[Period]:
    """The last `count` finished calendar months, newest first."""
    first = _today().replace(day=1)
    months = []
    for _n in range(count):
        first = (first - timedelta(days=1)).replace(day=1)
        months.append(Period.month(first.strftime("%Y-%m")))
    return months


def _period_or_404(key: str) -> Period:
    try:
        return parse_key(key)
    except SettlementRefused:
        abort(404)


@bp.get("/")
@staff_required(*MONEY_ROLES)
def index():
    """Each operator-and-site this user may see: the terms in force and the recent statements."""
    today = _today()
    cards = []
    for pair in operator_sites(current_user):
        book = agreement_services.AgreementBook(agreement_services.agreements_of(pair.operator.id, pair.site.id))
        in_force = [a for a in book.agreements if book.covers(a, today)]
        stored = {
            (s.period_start, s.period_end): s for s in statement_services.statements_of(pair.operator.id, pair.site.id)
        }
        months = [(m, stored.get((m.start, m.end))) for m in _closed_months(3)]
        cards.append(
            {
                "pair": pair,
                "in_force": in_force,
                "months": months,
                "last_issued": statement_services.last_issued(pair.operator.id, pair.site.id),
            }
        )
    return render_template("operator/index.html", cards=cards)


# --- agreements ------------------------------------------------------------------------------------


@bp.get("/<int:operator_id>/<int:site_id>/agreements")
@staff_required(*MONEY_ROLES)
def agreements(operator_id: int, site_id: int):
    """Every agreement of the operator at the site, with the days each is in force."""
    pair = get_operator_site_or_404(current_user, operator_id, site_id)
    book = agreement_services.AgreementBook(agreement_services.agreements_of(operator_id, site_id))
    today = _today()
    return render_template(
        "operator/agreements.html",
        pair=pair,
        agreements=book.agreements,
        ranges=book.ranges,
        in_force_ids={a.id for a in book.agreements if book.covers(a, today)},
        issued_until=agreement_services.last_issued_end(operator_id, site_id),
        can_write=current_user.role in AGREEMENT_WRITE_ROLES,
        form=ActionForm(),
    )


@bp.route("/<int:operator_id>/<int:site_id>/agreements/new", methods=["GET", "POST"])
@staff_required(*AGREEMENT_WRITE_ROLES)
def new_agreement(operator_id: int, site_id: int):
    """Create an agreement; every refusal (shares, overlaps, issued periods) is shown on the form."""
    pair = get_operator_site_or_404(current_user, operator_id, site_id)
    form = AgreementForm()
    sheds = [s for s in pair.site.sheds if s.operator_id == operator_id]
    form.scope.choices = [SelectChoice(0, _("Every shed of this operator at the site"))] + [
        SelectChoice(s.id, s.name) for s in sheds
    ]
    problem = None
    if request.method == "GET" and not form.valid_from.data:
        issued_until = agreement_services.last_issued_end(operator_id, site_id)
        form.valid_from.data = issued_until + timedelta(days=1) if issued_until else _today().replace(day=1)
    if form.validate_on_submit():
        try:
            agreement = agreement_services.create_agreement(
                operator_id=operator_id,
                site_id=site_id,
                shed_id=form.scope.data or None,
                valid_from=form.valid_from.data,
                valid_to=form.valid_to.data,
                electricity_fen_per_kwh=form.electricity_fen(),
                fee_mode=form.fee_mode.data,
                parties=form.party_inputs(),
                note=form.note.data or "",
                created_by_id=current_user.id,
            )
        except SettlementRefused as refused:
            problem = refused.message
        else:
            db.session.commit()
            flash(_("Agreement #%(id)s saved.", id=agreement.id), "ok")
            return redirect(url_for(".agreements", operator_id=operator_id, site_id=site_id))
    status = 422 if request.method == "POST" else 200
    return render_template("operator/agreement_form.html", pair=pair, form=form, problem=problem), status


@bp.post("/agreements/<int:agreement_id>/delete")
@staff_required(*AGREEMENT_WRITE_ROLES)
def delete_agreement(agreement_id: int):
    """Delete an agreement that no issued statement used."""
    agreement = get_agreement_or_404(current_user, agreement_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    back = url_for(".agreements", operator_id=agreement.operator_id, site_id=agreement.site_id)
    try:
        agreement_services.delete_agreement(agreement)
    except SettlementRefused as refused:
        flash(str(refused.message), "error")
    else:
        db.session.commit()
        flash(_("Agreement deleted."), "ok")
    return redirect(back)


# --- statements ------------------------------------------------------------------------------------


@bp.get("/<int:operator_id>/<int:site_id>/statements")
@staff_required(*MONEY_ROLES)
def statements(operator_id: int, site_id: int):
    """Recent months and every stored statement; a custom period can be chosen."""
    pair = get_operator_site_or_404(current_user, operator_id, site_id)
    stored = statement_services.statements_of(operator_id, site_id)
    by_period = {(s.period_start, s.period_end): s for s in stored}
    months = [(m, by_period.pop((m.start, m.end), None)) for m in _closed_months(RECENT_MONTHS)]
    others = [(Period(s.period_start, s.period_end), s) for s in by_period.values()]
    form = PeriodForm(request.args)
    problem = None
    if request.args and form.validate():
        try:
            period = parse_period(start=form.start.data.isoformat(), end=form.end.data.isoformat())
        except SettlementRefused as refused:
            problem = refused.message
        else:
            return redirect(url_for(".statement", operator_id=operator_id, site_id=site_id, key=period.key))
    status = 422 if problem or (request.args and form.errors) else 200
    return render_template(
        "operator/statements.html", pair=pair, months=months, others=others, form=form, problem=problem
    ), status


def _statement_context(pair, period: Period, message: str | None = None, message_kind: str = "ok") -> dict:
    view = statement_services.view_statement(pair.operator.id, pair.site.id, period)
    statement = view.statement
    issued_at = statement.issued_at if statement is not None and statement.is_issued else None
    document = build(view.figures, view.status if view.still_current else DRAFT, view.number, issued_at)
    return dict(
        pair=pair,
        period=period,
        view=view,
        statement=statement,
        document=document,
        totals=view.figures["totals"],
        figures=view.figures,
        form=ActionForm(),
        message=message,
        message_kind=message_kind,
        formats=FORMATS,
        can_review=current_user.role in MONEY_ROLES,
        can_issue=current_user.role in ISSUE_ROLES,
    )


def _open_period_page(pair, period: Period, refused: SettlementRefused):
    return render_template(
        "operator/statement_unavailable.html", pair=pair, period=period, problem=refused.message
    ), 409


@bp.get("/<int:operator_id>/<int:site_id>/statements/<key>")
@staff_required(*MONEY_ROLES)
def statement(operator_id: int, site_id: int, key: str):
    """One period's statement: issued (locked), reviewed, or a live draft."""
    pair = get_operator_site_or_404(current_user, operator_id, site_id)
    period = _period_or_404(key)
    try:
        context = _statement_context(pair, period)
    except SettlementRefused as refused:
        return _open_period_page(pair, period, refused)
    return render_template("operator/statement.html", **context)


@bp.get("/<int:operator_id>/<int:site_id>/statements/<key>/statement.<fmt>")
@staff_required(*MONEY_ROLES)
def download(operator_id: int, site_id: int, key: str, fmt: str):
    """The statement as CSV, XLSX or PDF (the same figures as the page)."""
    pair = get_operator_site_or_404(current_user, operator_id, site_id)
    period = _period_or_404(key)
    if fmt not in FORMATS:
        abort(404)
    try:
        view = statement_services.view_statement(operator_id, site_id, period)
    except SettlementRefused as refused:
        return _open_period_page(pair, period, refused)
    content, name = statement_file(view, fmt)
    response = make_response(content, 200)
    response.headers["Content-Type"] = MIME_TYPES[fmt]
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _action(operator_id: int, site_id: int, key: str, act) -> object:
    """Run a statement action and commit what it did; htmx gets the whole statement back (status, meta,
    figures), a plain post a redirect."""
    pair = get_operator_site_or_404(current_user, operator_id, site_id)
    period = _period_or_404(key)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        message, kind = act(pair, period), "ok"
    except SettlementRefused as refused:
        message, kind = str(refused.message), "error"
    else:
        db.session.commit()
    if not is_partial():
        flash(message, kind)
        return redirect(url_for(".statement", operator_id=operator_id, site_id=site_id, key=key), code=303)
    try:
        context = _statement_context(pair, period, message, kind)
    except SettlementRefused as refused:
        return _open_period_page(pair, period, refused)
    response = make_response(render_template("operator/_statement.html", **context), 200)
    response.vary.add("HX-Request")
    return response


@bp.post("/<int:operator_id>/<int:site_id>/statements/<key>/review")
@staff_required(*MONEY_ROLES)
def review(operator_id: int, site_id: int, key: str):
    """Mark the period's figures as reviewed (a snapshot the issue will check against the books)."""

    def act(pair, period):
        statement_services.review(pair.operator.id, pair.site.id, period, current_user.id)
        return _("Marked as reviewed. The figures are kept as they are now; issue the statement to lock them.")

    return _action(operator_id, site_id, key, act)


@bp.post("/<int:operator_id>/<int:site_id>/statements/<key>/reopen")
@staff_required(*MONEY_ROLES)
def reopen(operator_id: int, site_id: int, key: str):
    """Send a reviewed statement back to draft."""

    def act(pair, period):
        found = statement_services.find_statement(pair.operator.id, pair.site.id, period)
        if found is None or found.status == DRAFT:
            return _("The statement is a draft already.")
        statement_services.reopen(found)
        return _("Back to draft.")

    return _action(operator_id, site_id, key, act)


@bp.post("/<int:operator_id>/<int:site_id>/statements/<key>/issue")
@staff_required(*MONEY_ROLES)
def issue(operator_id: int, site_id: int, key: str):
    """Issue the reviewed statement: lock and number it. Asking twice changes nothing and says so."""
    require_role(current_user, ISSUE_ROLES)

    def act(pair, period):
        found = statement_services.find_statement(pair.operator.id, pair.site.id, period)
        if found is None:
            raise SettlementRefused(_("Review the statement before issuing it."))
        result = statement_services.issue(found, current_user.id)
        if not result.changed:
            return _(
                "Statement %(number)s was already issued on %(day)s; nothing changed.",
                number=found.number,
                day=to_local(found.issued_at).strftime("%Y-%m-%d %H:%M"),
            )
        return _("Statement %(number)s issued. Its figures are locked.", number=found.number)

    return _action(operator_id, site_id, key, act)
