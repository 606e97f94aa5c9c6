"""包月 monthly passes: residents buy, see and refund theirs; the operator sets the plans of a site."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from chargeshed.accounts.access import get_site_or_404
from chargeshed.accounts.models import ROLE_ADMIN, ROLE_OPERATOR_STAFF
from chargeshed.accounts.services import default_site_id
from chargeshed.extensions import db
from chargeshed.money import ledger
from chargeshed.money.format import format_fen
from chargeshed.passes import service as passes
from chargeshed.passes.models import ACTIVE, MonthlyPass, PassPlan
from chargeshed.settlement.access import operator_sites
from chargeshed.sites.models import Site
from chargeshed.timeutil import now as clock_now
from chargeshed.web.access import staff_required
from chargeshed.web.forms import ActionForm
from chargeshed.web.resident_forms import PassPlanForm

bp = Blueprint("passes", __name__)
PLAN_ROLES = (ROLE_ADMIN, ROLE_OPERATOR_STAFF)


def refusal_message(code: str) -> str:
    """A pass refusal in words."""
    return {
        "insufficient_funds": _("Your wallet does not cover this pass. Top up first."),
        "already_renewed": _("You have already renewed: the next pass starts when this one ends."),
        "plan_closed": _("This plan is no longer sold."),
        "no_pass": _("You have no pass valid today."),
        "daily_limit": _("Today's pass charges are used up. You can still pay this charge from your wallet."),
        "nothing_left": _("Nothing is left to refund on this pass."),
    }.get(code, _("That did not work."))


def _next_start(site_id: int, today):
    """The day a pass bought now would start, or None when a renewal is already waiting."""
    try:
        return passes.next_start(current_user.id, site_id, today)
    except passes.PassRefused:
        return None


def _site_id() -> int:
    site_id = current_user.site_id or default_site_id()
    if site_id is None:
        abort(404)
    return site_id


@bp.get("/site/<int:site_id>/passes")
def plans_public(site_id: int):
    """Public: the monthly-pass plans of a compound in plain words (linked from the tariff)."""
    site = db.session.get(Site, site_id)
    if site is None:
        abort(404)
    return render_template("resident/pass_plans_public.html", site=site, plans=passes.plans_for_site(site.id))


@bp.get("/passes")
@login_required
def index():
    """Plans on sale at my compound, my passes, what a refund would give back today."""
    site_id, now = _site_id(), clock_now()
    today = passes.local_day(now)
    mine = passes.passes_of(current_user.id, site_id)
    return render_template(
        "resident/passes.html",
        starts=_next_start(site_id, today),
        plans=passes.plans_for_site(site_id),
        mine=mine,
        today=today,
        refunds={p.id: passes.refund_amount(p, today) for p in mine},
        used={p.id: passes.charges_today(p, today) for p in mine},
        ACTIVE=ACTIVE,
        balance=ledger.wallet_balance(current_user.id),
        form=ActionForm(),
    )


@bp.route("/passes/buy/<int:plan_id>", methods=["GET", "POST"])
@login_required
def buy(plan_id: int):
    """Confirm, then buy a pass from the wallet (one balanced transaction)."""
    plan = db.session.get(PassPlan, plan_id)
    if plan is None or plan.site_id != _site_id() or not plan.active:
        abort(404)
    if request.method == "POST":
        if not ActionForm().validate_on_submit():
            abort(400)
        try:
            bought = passes.buy(current_user.id, plan, clock_now())
        except passes.PassRefused as refused:
            db.session.rollback()
            flash(refusal_message(refused.code), "error")
            return redirect(url_for(".index"))
        db.session.commit()
        flash(
            _(
                "Pass bought: valid from %(start)s to %(end)s.",
                start=bought.starts_on.isoformat(),
                end=bought.last_day.isoformat(),
            ),
            "ok",
        )
        return redirect(url_for(".index"))
    balance = ledger.wallet_balance(current_user.id)
    today = passes.local_day(clock_now())
    starts = _next_start(plan.site_id, today)
    return render_template(
        "resident/pass_buy.html",
        plan=plan,
        balance=balance,
        form=ActionForm(),
        enough=balance >= plan.price_fen,
        today=today,
        starts=starts,
        last_day=starts + timedelta(days=plan.days - 1) if starts else None,
        refused=refusal_message("already_renewed") if starts is None else None,
    )


@bp.route("/passes/<int:pass_id>/refund", methods=["GET", "POST"])
@login_required
def refund(pass_id: int):
    """Confirm, then end my pass today and get the unused days back in the wallet."""
    monthly_pass = db.session.get(MonthlyPass, pass_id)
    if monthly_pass is None or monthly_pass.user_id != current_user.id:
        abort(404)
    now = clock_now()
    amount = passes.refund_amount(monthly_pass, passes.local_day(now))
    if request.method == "POST":
        if not ActionForm().validate_on_submit():
            abort(400)
        try:
            done = passes.refund(monthly_pass, now)
        except passes.PassRefused as refused:
            db.session.rollback()
            flash(refusal_message(refused.code), "error")
            return redirect(url_for(".index"))
        db.session.commit()
        flash(_("%(amount)s returned to your wallet.", amount=format_fen(done)), "ok")
        return redirect(url_for(".index"))
    return render_template(
        "resident/pass_refund.html",
        monthly_pass=monthly_pass,
        amount=amount,
        used_days=passes.used_days(monthly_pass, passes.local_day(now)),
        form=ActionForm(),
    )


@bp.route("/operator/passes/<int:site_id>", methods=["GET", "POST"])
@staff_required(*PLAN_ROLES)
def plans(site_id: int):
    """The operator's plans for a site: add one, stop selling one (asked once more first); pass
    revenue recognised per day."""
    site = get_site_or_404(current_user, site_id)
    form = PassPlanForm()
    stopping = None  # the plan whose stop is being confirmed
    if request.method == "POST" and request.form.get("stop_plan"):
        if not ActionForm().validate_on_submit():
            abort(400)
        plan = db.session.get(PassPlan, request.form.get("stop_plan", type=int) or 0)
        if plan is None or plan.site_id != site.id:
            abort(404)
        if request.form.get("confirmed") != "yes":
            stopping = plan
        else:
            plan.active = False
            db.session.commit()
            flash(_("The plan is no longer sold. Passes already bought stay valid."), "ok")
            return redirect(url_for(".plans", site_id=site.id))
    elif form.validate_on_submit():
        db.session.add(
            PassPlan(
                site_id=site.id,
                name=form.name.data.strip(),
                price_fen=form.price.data,
                days=form.days.data,
                charges_per_day=form.charges_per_day.data,
                hours_per_charge=form.hours_per_charge.data,
                max_watts=form.max_watts.data,
            )
        )
        db.session.commit()
        flash(_("Plan added."), "ok")
        return redirect(url_for(".plans", site_id=site.id))
    today = passes.local_day(clock_now())
    month_start = today.replace(day=1)
    last_month = (month_start - timedelta(days=1)).replace(day=1)
    revenue = {
        "this": passes.pass_revenue(site.id, month_start, today + timedelta(days=1)),
        "last": passes.pass_revenue(site.id, last_month, month_start),
    }
    return render_template(
        "operator/pass_plans.html",
        site=site,
        plans=passes.plans_for_site(site.id, False),
        form=form,
        stop_form=ActionForm(),
        revenue=revenue,
        pairs=[pair for pair in operator_sites(current_user) if pair.site.id == site.id],
        month_start=month_start,
        last_month=last_month,
        stopping=stopping,
    ), 200 if request.method == "GET" or stopping is not None else 400
