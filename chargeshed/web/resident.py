"""Resident pages: scan a port, start, watch, stop, top up, cash out, history, bikes."""

from __future__ import annotations

import secrets

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from sqlalchemy import func, select

from chargeshed.accounts import services as accounts
from chargeshed.charging import sessions as charging
from chargeshed.charging.access import get_own_session_or_404
from chargeshed.charging.models import LIVE_STATES, PENDING, ChargeSession
from chargeshed.charging.port_state import port_state_now
from chargeshed.charging.scan import load_scan
from chargeshed.extensions import db
from chargeshed.htmx import make_response, render_page_or_partial
from chargeshed.money import ledger
from chargeshed.money.format import format_fen
from chargeshed.payments import events as payment_events
from chargeshed.payments import fulfilment, refunds
from chargeshed.payments.access import get_own_cashout_or_404, get_own_topup_or_404
from chargeshed.payments.models import (
    CREDITED,
    REFUND_FAILED,
    REFUNDED,
    UNPAID_STATES,
    CashOut,
    TopUp,
    TopUpRefund,
)
from chargeshed.payments.providers import CheckoutUrls, provider_from_config
from chargeshed.sites import qr
from chargeshed.sites.services import get_port_by_code_or_404
from chargeshed.timeutil import now as clock_now
from chargeshed.web.forms import ActionForm, BikeForm, TopUpForm
from chargeshed.web.payment_forms import CashOutForm

bp = Blueprint("resident", __name__)

# Polling stops itself: htmx stops polling on HTTP 286.
STOP_POLLING = 286
HISTORY_PAGE = 20

CASHOUT_STATES = {
    "pending": _l("On its way"),
    "completed": _l("Returned"),
    "partial": _l("Partly returned"),
    "failed": _l("Failed – money back in your wallet"),
}
REFUND_STATES = {
    "pending": _l("On its way"),
    "succeeded": _l("Returned"),
    "failed": _l("Failed – back in your wallet"),
}


def _provider():
    return provider_from_config(current_app.config)


def _topup_amounts() -> list[int]:
    return list(current_app.config["TOPUP_AMOUNTS_FEN"])


def _refusal_message(code: str) -> str:
    return {
        "port_busy": _("This port is in use. Please choose another free port."),
        "port_maintenance": _("This port is under maintenance. Please use another port."),
        "port_retired": _("This port is no longer in service."),
        "port_fault": _("This port has a fault and cannot charge now. Please use another port."),
        "port_offline": _("This port is not responding. Please use another port."),
        "insufficient_funds": _("Your wallet does not cover the prepaid amount. Please top up."),
        "expired": _("The payment took too long, so the charge was not started. Scan the port again."),
        "amount": _("Choose one of the offered amounts."),
    }.get(code, _("The charge could not be started."))


@bp.get("/")
def home():
    """Signed in: wallet, live charges, last charges. Otherwise: how it works."""
    if not current_user.is_authenticated:
        return render_template("resident/welcome.html")
    live = db.session.execute(
        select(ChargeSession).where(ChargeSession.user_id == current_user.id,
                                    ChargeSession.state.in_(LIVE_STATES)).order_by(ChargeSession.id.desc())
    ).scalars().all()
    return render_template("resident/home.html", live=live, balance=ledger.wallet_balance(current_user.id),
                           amounts=_topup_amounts(), form=ActionForm(), now=clock_now())


@bp.get("/p/<code>")
def port_page(code: str):
    """The scan target: which port this is, its state, the price, and Start or Top up and start."""
    signed_in = current_user.is_authenticated
    found = load_scan(code, current_user.id if signed_in else None)  # one statement: see charging/scan.py
    if found is None:
        abort(404)
    port, live, terms, balance = found.port, found.live, found.terms, found.balance_fen
    now = clock_now()
    state = port_state_now(port, live, now)
    refusal = charging.refusal_for_port(port, now, live)
    mine = live if live is not None and signed_in and live.user_id == current_user.id else None
    amounts = _topup_amounts()
    shortfall = max(0, terms.hold_fen - (balance or 0))
    suggested = next((a for a in amounts if a >= shortfall), amounts[-1])
    return render_template(
        "resident/port.html", port=port, shed=found.shed, state=state, refusal=refusal, terms=terms,
        balance=balance, mine=mine, amounts=amounts, suggested=suggested,
        # Only signed-in residents get forms: an anonymous scan sets no session cookie.
        form=ActionForm() if signed_in else None,
        refusal_message=_refusal_message(refusal) if refusal else None, provider=_provider(),
    )


@bp.post("/p/<code>/start")
@login_required
def start(code: str):
    """Reserve the hold and start; a double tap lands on the same session."""
    port = get_port_by_code_or_404(code)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        session = charging.start_session(current_user.id, port)
    except charging.StartRefused as refused:
        flash(_refusal_message(refused.code), "error")
        return redirect(url_for(".port_page", code=port.code))
    db.session.commit()
    return redirect(url_for(".session_page", session_id=session.id))


@bp.post("/p/<code>/topup")
@login_required
def topup_and_start(code: str):
    """Top up the wallet and start this port as soon as the payment is confirmed."""
    port = get_port_by_code_or_404(code)
    return _begin_topup(start_port=port, cancel=url_for(".port_page", code=port.code, _external=True))


@bp.post("/wallet/topup")
@login_required
def topup():
    """Top up the wallet."""
    return _begin_topup(start_port=None, cancel=url_for(".wallet", _external=True))


def _begin_topup(start_port, cancel: str):
    """Record the top-up and commit, then ask the provider for a checkout (bounded waits) with no
    transaction open; if the provider fails or hangs, the resident hears so within seconds."""
    form = TopUpForm()
    if not form.validate_on_submit():
        flash(_refusal_message("amount"), "error")
        return redirect(cancel)
    provider = _provider()
    try:
        topup_row = fulfilment.create_topup(current_user.id, form.amount.data, _topup_amounts(),
                                            current_app.config["CURRENCY"], provider.name, start_port)
    except fulfilment.TopUpRefused as refused:
        flash(_refusal_message(str(refused)), "error")
        return redirect(cancel)
    db.session.commit()
    urls = CheckoutUrls(
        success=url_for(".topup_done", topup_id=topup_row.id, _external=True),
        cancel=cancel,
        demo=url_for(".demo_pay", topup_id=topup_row.id),
    )
    try:
        checkout_url = provider.create_checkout(topup_row, urls, _("ChargeShed wallet top-up"))
    except Exception:  # the provider is down, hangs or refused: nothing was charged
        current_app.logger.exception("checkout creation failed for top-up %s", topup_row.id)
        db.session.rollback()
        fulfilment.mark_failed_to_start(topup_row.id)
        db.session.commit()
        flash(_("Payment is not available right now. Please try again in a minute."), "error")
        return redirect(cancel)
    db.session.commit()
    return redirect(checkout_url, code=303)


@bp.route("/demo-pay/<int:topup_id>", methods=["GET", "POST"])
@login_required
def demo_pay(topup_id: int):
    """The demo provider's checkout page: clearly a demo, no money moves."""
    topup_row = get_own_topup_or_404(current_user, topup_id)
    provider = _provider()
    if not provider.is_demo or topup_row.provider != "demo":
        abort(404)
    form = ActionForm()
    if request.method == "POST" and form.validate_on_submit():
        return _after_payment(topup_row, provider.paid_payment(topup_row))
    return render_template("resident/demo_pay.html", topup=topup_row, form=form)


@bp.get("/topup/<int:topup_id>/done")
@login_required
def topup_done(topup_id: int):
    """Stripe's success redirect: confirm with Stripe and fulfil (same function as the webhook)."""
    topup_row = get_own_topup_or_404(current_user, topup_id)
    if topup_row.status == CREDITED:
        return _after_payment(topup_row, None)
    if topup_row.status in UNPAID_STATES:
        return _unpaid(topup_row, topup_row.status)
    provider = _provider()
    if provider.is_demo:
        abort(404)
    db.session.commit()  # no transaction open while Stripe is asked
    try:
        payment, unpaid = provider.checkout_state(topup_row)
    except Exception:
        current_app.logger.exception("could not confirm top-up %s", topup_row.id)
        payment, unpaid = None, None
    if unpaid is not None:
        fulfilment.mark_unpaid(topup_row.id, topup_row.checkout_ref, unpaid)
        db.session.commit()
        return _unpaid(topup_row, unpaid)
    if payment is None:
        return render_template("resident/topup_waiting.html", topup=topup_row)
    return _after_payment(topup_row, payment)


def _unpaid(topup_row: TopUp, status: str):
    """A top-up that will never be paid: say so plainly and send the resident back."""
    if status == REFUNDED:
        flash(_("This payment was refunded, so nothing was added to your wallet."), "error")
    else:
        flash(_("The payment was not completed and nothing was charged. You can top up again."), "error")
    if topup_row.start_port_id is not None:
        return redirect(url_for(".port_page", code=topup_row.start_port.code))
    return redirect(url_for(".wallet"))


def _after_payment(topup_row: TopUp, payment):
    ttl = current_app.config["PENDING_START_TTL_SECONDS"]
    if payment is not None:
        result = payment_events.settle_payment(topup_row.id, payment, _provider(), start_ttl_seconds=ttl,
                                               record_fee=False)
    else:  # credited already (e.g. by the webhook): make sure its waiting charge started
        result = fulfilment.start_waiting_charge(topup_row, ttl_seconds=ttl)
        db.session.commit()
    db.session.refresh(topup_row)
    if result.problem:
        flash(_("We could not confirm this payment. If money was taken, it will be credited or refunded."),
              "error")
        return redirect(url_for(".wallet"))
    if topup_row.status == REFUNDED:
        return _unpaid(topup_row, REFUNDED)
    if result.session_id:
        return redirect(url_for(".session_page", session_id=result.session_id))
    if result.start_refused:
        flash(_refusal_message(result.start_refused), "error")
    else:
        flash(_("%(amount)s added to your wallet.", amount=format_fen(topup_row.amount_fen)), "ok")
    if topup_row.start_port_id is not None:
        return redirect(url_for(".port_page", code=topup_row.start_port.code))
    return redirect(url_for(".wallet"))


@bp.get("/s/<int:session_id>")
@login_required
def session_page(session_id: int):
    """A charge in progress or finished; the live part polls itself."""
    session = get_own_session_or_404(current_user, session_id)
    return render_page_or_partial("resident/session.html", "resident/_session_live.html",
                                  **_session_context(session))


@bp.get("/s/<int:session_id>/live")
@login_required
def session_live(session_id: int):
    """The live fragment; answers 286 once the session is over so polling stops."""
    session = get_own_session_or_404(current_user, session_id)
    response = render_page_or_partial("resident/session.html", "resident/_session_live.html",
                                      **_session_context(session))
    if not session.is_live:
        response.status_code = STOP_POLLING if response.status_code == 200 and request.htmx else 200
    return response


def _session_context(session: ChargeSession) -> dict:
    now = clock_now()
    terms = session.terms
    elapsed = session.charged_seconds(now)
    limit = terms.paid_seconds(charging.current_tier_watts(session, now))
    progress = 100 if not session.is_live else min(100, int(elapsed * 100 / limit)) if limit else 0
    return dict(session=session, port=session.port, cost=charging.cost_now(session, now), elapsed=elapsed,
                limit_seconds=limit, progress=progress, form=ActionForm(), terms=terms,
                balance=ledger.wallet_balance(session.user_id))


@bp.post("/s/<int:session_id>/stop")
@login_required
def stop(session_id: int):
    """Stop my charge now and settle: pay for what was used, the rest back to the wallet."""
    session = get_own_session_or_404(current_user, session_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    if session.is_live:
        if session.state == PENDING:
            charging.fail_session(session, charging.USER_STOP, detail="cancelled before start")
        else:
            charging.end_session(session, charging.USER_STOP)
    if request.htmx:
        return make_response("", 204, redirect=url_for(".session_page", session_id=session.id))
    return redirect(url_for(".session_page", session_id=session.id))


@bp.get("/wallet")
@login_required
def wallet():
    """Balance, top-up buttons, what can be withdrawn, recent top-ups and cash-outs."""
    provider = _provider()
    topups = db.session.execute(
        select(TopUp).where(TopUp.user_id == current_user.id, TopUp.status == CREDITED)
        .order_by(TopUp.id.desc()).limit(HISTORY_PAGE)
    ).scalars().all()
    refunded = dict(db.session.execute(
        select(TopUpRefund.topup_id, func.sum(TopUpRefund.amount_fen))
        .where(TopUpRefund.topup_id.in_([t.id for t in topups]), TopUpRefund.status != REFUND_FAILED)
        .group_by(TopUpRefund.topup_id)
    ).all())
    cashouts = db.session.execute(
        select(CashOut).where(CashOut.user_id == current_user.id).order_by(CashOut.id.desc()).limit(5)
    ).scalars().all()
    return render_template("resident/wallet.html", balance=ledger.wallet_balance(current_user.id),
                           amounts=_topup_amounts(), topups=topups, refunded=refunded, cashouts=cashouts,
                           withdrawable=_withdrawable(provider), form=ActionForm(), provider=provider,
                           CASHOUT_STATES=CASHOUT_STATES)


def _withdrawable(provider) -> int:
    return refunds.withdrawable_fen(current_user.id, provider.name, window_days=_refund_window())


def _refund_window() -> int:
    return int(current_app.config["REFUND_WINDOW_DAYS"])


def _cashout_message(refused: refunds.CashOutRefused) -> str:
    limit = format_fen(refused.limit_fen)
    return {
        "over_balance": _("That is more than your balance. You can withdraw at most %(limit)s.", limit=limit),
        "over_refundable": _("Only %(limit)s can go back to the payment methods you topped up with "
                             "(top-ups older than %(days)s days cannot be refunded).", limit=limit,
                             days=_refund_window()),
    }.get(refused.code, _("Enter an amount above zero."))


@bp.route("/wallet/cashout", methods=["GET", "POST"])
@login_required
def cashout():
    """Withdraw wallet money: refunded to the card, Alipay or WeChat Pay of recent top-ups."""
    provider = _provider()
    form = CashOutForm()
    if form.validate_on_submit():
        try:
            done = refunds.request_cashout(current_user.id, form.amount.data, provider,
                                           window_days=_refund_window(),
                                           request_key=request.form.get("request_key", "")[:64] or None)
        except refunds.CashOutRefused as refused:
            form.amount.errors.append(_cashout_message(refused))
        else:
            flash(_("Withdrawal of %(amount)s requested.", amount=format_fen(done.amount_fen)), "ok")
            return redirect(url_for(".cashout_detail", cashout_id=done.id))
    withdrawable = _withdrawable(provider)
    if request.method == "GET" and withdrawable:
        form.amount.data = withdrawable
    return render_template("resident/cashout.html", form=form, balance=ledger.wallet_balance(current_user.id),
                           withdrawable=withdrawable, provider=provider, window_days=_refund_window(),
                           request_key=secrets.token_urlsafe(24))


@bp.get("/wallet/cashout/<int:cashout_id>")
@login_required
def cashout_detail(cashout_id: int):
    """One cash-out: how much went back to which top-up, and what is still on its way."""
    row = get_own_cashout_or_404(current_user, cashout_id)
    return render_template("resident/cashout_detail.html", cashout=row, CASHOUT_STATES=CASHOUT_STATES,
                           REFUND_STATES=REFUND_STATES)


@bp.get("/history")
@login_required
def history():
    """My charges, newest first, with cost and end reason."""
    page = max(1, request.args.get("page", 1, type=int) or 1)
    sessions = db.session.execute(
        select(ChargeSession).where(ChargeSession.user_id == current_user.id)
        .order_by(ChargeSession.id.desc()).offset((page - 1) * HISTORY_PAGE).limit(HISTORY_PAGE + 1)
    ).scalars().all()
    return render_template("resident/history.html", sessions=sessions[:HISTORY_PAGE], page=page,
                           has_more=len(sessions) > HISTORY_PAGE)


@bp.route("/bikes", methods=["GET", "POST"])
@login_required
def bikes():
    """Register my bikes by plate."""
    form = BikeForm()
    if form.validate_on_submit():
        if accounts.add_bike(current_user, form.plate.data, form.note.data or "") is None:
            form.plate.errors.append(_("This plate is already registered."))
        else:
            flash(_("Bike registered."), "ok")
            return redirect(url_for(".bikes"))
    return render_template("resident/bikes.html", form=form, delete_form=ActionForm())


@bp.post("/bikes/<int:bike_id>/delete")
@login_required
def delete_bike(bike_id: int):
    """Remove one of my bikes."""
    if not ActionForm().validate_on_submit() or not accounts.remove_bike(current_user, bike_id):
        abort(404)
    flash(_("Bike removed."), "ok")
    return redirect(url_for(".bikes"))


@bp.get("/p/<code>/qr.svg")
def port_qr_svg(code: str):
    """The port's QR code as SVG (encodes PUBLIC_BASE_URL/p/<code>)."""
    port = get_port_by_code_or_404(code)
    body = qr.qr_svg(qr.port_url(current_app.config["PUBLIC_BASE_URL"], port.code))
    return current_app.response_class(body, mimetype="image/svg+xml",
                                      headers={"Cache-Control": "public, max-age=86400"})


@bp.get("/p/<code>/qr.png")
def port_qr_png(code: str):
    """The port's QR code as PNG."""
    port = get_port_by_code_or_404(code)
    body = qr.qr_png(qr.port_url(current_app.config["PUBLIC_BASE_URL"], port.code))
    return current_app.response_class(body, mimetype="image/png",
                                      headers={"Cache-Control": "public, max-age=86400"})
