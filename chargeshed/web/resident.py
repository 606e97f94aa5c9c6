"""Resident pages: scan a port, start, watch, stop, top up, cash out, history, bikes."""

from __future__ import annotations

import secrets
from functools import partial

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from sqlalchemy import func, select

from chargeshed.accounts import reset as password_reset
from chargeshed.accounts import services as accounts
from chargeshed.charging import sessions as charging
from chargeshed.charging.access import get_own_session_or_404
from chargeshed.charging.finder import free_ports_near, site_sheds
from chargeshed.charging.models import LIVE_STATES, PENDING, ChargeSession
from chargeshed.charging.port_state import port_state_now
from chargeshed.charging.scan import load_scan, load_scan_with_user, page_inputs
from chargeshed.extensions import autocommit_engine, db, limiter
from chargeshed.htmx import make_response, render_page_or_partial
from chargeshed.money import ledger
from chargeshed.money.format import format_fen
from chargeshed.money.statement import wallet_statement
from chargeshed.notify import consent as notify_consent
from chargeshed.notify import events as notify_events
from chargeshed.notify import wechat as notify_wechat
from chargeshed.notify.base import SMS, WECHAT, NotifyError
from chargeshed.notify.config import get_notifiers
from chargeshed.notify.outbox import send_rows
from chargeshed.passes import service as passes
from chargeshed.payments import events as payment_events
from chargeshed.payments import fulfilment, refunds
from chargeshed.payments.access import get_own_cashout_or_404, get_own_topup_or_404
from chargeshed.payments.models import (
    CREDITED,
    REFUND_FAILED,
    REFUNDED,
    UNPAID_STATES,
    CashOut,
    SessionRefund,
    TopUp,
    TopUpRefund,
)
from chargeshed.payments.providers import CheckoutUrls, provider_from_config
from chargeshed.ports.models import PortEvent
from chargeshed.sites import qr
from chargeshed.sites.codes import CODE_IN_LINK
from chargeshed.sites.models import Shed, Site
from chargeshed.sites.services import get_port_by_code_or_404
from chargeshed.timeutil import now as clock_now
from chargeshed.web import scan_front
from chargeshed.web.forms import ActionForm, BikeForm, TopUpForm, typed_port
from chargeshed.web.passes import refusal_message as pass_refusal
from chargeshed.web.payment_forms import CashOutForm
from chargeshed.web.render_cache import cached_render, render_cache
from chargeshed.web.resident_forms import ForgotForm, ResetForm
from chargeshed.web.sessions import csrf_token

bp = Blueprint("resident", __name__)

# Polling stops itself: htmx stops polling on HTTP 286.
STOP_POLLING = 286
HISTORY_PAGE = 20
# The free-port page refreshes every SITE_POLL_SECONDS and stops after SITE_POLL_LIMIT rounds (about
# ten minutes): someone looking for a port has found one by then, and an idle tab stops costing requests.
SITE_POLL_SECONDS = 10
SITE_POLL_LIMIT = 60

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


REFUSAL_MESSAGES = {
    "port_busy": _l("This port is in use. Please choose another free port."),
    "port_maintenance": _l("This port is under maintenance. Please use another port."),
    "port_retired": _l("This port is no longer in service."),
    "port_fault": _l("This port has a fault and cannot charge now. Please use another port."),
    "port_offline": _l("This port is not responding. Please use another port."),
    "insufficient_funds": _l("Your wallet does not cover the prepaid amount. Please top up."),
    "expired": _l("The payment took too long, so the charge was not started. Scan the port again."),
    "amount": _l("Choose one of the offered amounts."),
}


def _refusal_message(code: str) -> str:
    message = REFUSAL_MESSAGES.get(code)
    return str(message) if message is not None else _("The charge could not be started.")


@bp.get("/")
def home():
    """Signed in: wallet, live charges, last charges. Otherwise: how it works."""
    if not current_user.is_authenticated:
        return render_template("resident/welcome.html")
    live = (
        db.session.execute(
            select(ChargeSession)
            .where(ChargeSession.user_id == current_user.id, ChargeSession.state.in_(LIVE_STATES))
            .order_by(ChargeSession.id.desc())
        )
        .scalars()
        .all()
    )
    return render_template(
        "resident/home.html",
        live=live,
        balance=ledger.wallet_balance(current_user.id),
        amounts=_topup_amounts(),
        form=ActionForm(),
        now=clock_now(),
    )


@bp.get("/go")
def go_to_code():
    """Type the code printed under a damaged QR sticker: lower case and spaces are fine."""
    typed = request.args.get("code", "")
    code, port, message = typed_port(typed)
    if not code:
        return render_template("resident/code_entry.html", typed=typed, message=None)
    if port is not None:
        return redirect(url_for(".port_page", code=code))
    return render_template("resident/code_entry.html", typed=typed, message=message), 404


@bp.get("/site/<int:site_id>")
def site_ports(site_id: int):
    """Public: each shed's free, busy and out-of-service ports, live; polling stops after a while."""
    site = db.session.get(Site, site_id)
    if site is None:
        abort(404)
    rounds = max(0, request.args.get("round", 0, type=int) or 0)
    polling = rounds < SITE_POLL_LIMIT
    response = render_page_or_partial(
        "resident/site.html",
        "resident/_site_live.html",
        site=site,
        sheds=site_sheds(site.id, clock_now()),
        rounds=rounds,
        polling=polling,
        poll_seconds=SITE_POLL_SECONDS,
    )
    if not polling and request.htmx:
        response.status_code = STOP_POLLING
    return response


@bp.app_url_value_preprocessor
def _pay_page_reads_its_user_along(endpoint: str | None, values: dict | None) -> None:
    """A signed-in scan reads its user in the pay page's own statement: one round trip, not two.

    Runs before any hook asks Flask-Login for the user; the user loader then reads through
    `_user_and_scan`, which keeps the page's row for the view. Any other request reads its user
    plainly, even where one app context serves several requests.
    """
    g.pop("scan_read_along", None)
    if endpoint == "resident.port_page" and values and CODE_IN_LINK.fullmatch(values.get("code", "")):
        g.read_user = partial(_user_and_scan, values["code"])
    else:
        g.pop("read_user", None)


def _user_and_scan(code: str, user_id: int):
    """The user with this id, its pay page row for `code` kept in g for the view."""
    with autocommit_engine().connect() as reads:
        found, user = load_scan_with_user(code, user_id, reads)
    if found is None:  # an unknown port: the 404 page still shows who is signed in
        return accounts.user_by_id(user_id)
    g.scan_read_along = (user_id, found)
    return user


@bp.get("/p/<code>")
def port_page(code: str):
    """The scan target: which port this is, its state, the price, and Start or Top up and start.

    Rendered once per state (web/render_cache.py): the page's key is everything it shows (the port
    and its state, the price, the free ports nearby, the locale and path, and for a signed-in resident
    the balance and their own charge). Only the CSRF token of a signed-in page is per request: it is
    put in afterwards. A page with a message to show once is rendered for its request alone.
    """
    signed_in = current_user.is_authenticated
    read_along = g.pop("scan_read_along", None)
    if signed_in and read_along is not None and read_along[0] == current_user.id:
        found = read_along[1]  # read with the user, in one statement
    else:
        # One statement (see charging/scan.py) in autocommit, outside the ORM session: no transaction.
        with autocommit_engine().connect() as reads:
            found = load_scan(code, current_user.id if signed_in else None, connection=reads)
    if found is None:
        abort(404)
    port, live, terms, balance = found.port, found.live, found.terms, found.balance_fen
    now = clock_now()
    inputs = page_inputs(found, now)
    refusal = inputs.refusal
    page = dict(
        port=port,
        shed=found.shed,
        state=inputs.state,
        refusal=refusal,
        terms=terms,
        refusal_message=_refusal_message(refusal) if refusal else None,
        free_ports=_free_ports_near(found, now, inputs.free_ports_version)
        if refusal and refusal != "port_retired"
        else None,
    )
    if signed_in:
        amounts = tuple(_topup_amounts())
        shortfall = max(0, terms.hold_fen - balance)
        page.update(
            balance=balance,
            mine=live if live is not None and live.user_id == current_user.id else None,
            amounts=amounts,
            suggested=next((a for a in amounts if a >= shortfall), amounts[-1]),
            demo_payments=_provider().is_demo,
        )
    if session.get("_flashes"):
        return render_template("resident/port.html", **page)
    if not signed_in and (page["free_ports"] is None or inputs.free_ports_version is not None):
        # Kept for the next anonymous scan only when all it shows is named by its key: free ports
        # listed before the tick has recorded the site have no version to tell when they change.
        scan_front.offer(found, inputs)
    # Only signed-in residents get forms: an anonymous scan sets no session cookie.
    vary = (str(get_locale()), request.full_path, signed_in, signed_in and current_user.is_staff)
    body = cached_render("resident/port.html", vary, csrf_token=_csrf_placeholder, **page)
    return body.replace(CSRF_PLACEHOLDER, csrf_token()) if CSRF_PLACEHOLDER in body else body


# Stands for the CSRF token in a cached page (a NUL never comes from the database or a request).
CSRF_PLACEHOLDER = "\x00csrf\x00"


def _csrf_placeholder() -> str:
    return CSRF_PLACEHOLDER


def _free_ports_near(found, now, version: str | None) -> tuple:
    """The free ports nearby, reused while the site's occupancy version (kept by the tick) is the same."""
    args = (found.shed.site.id, found.shed.id, found.port.id)
    if version is None:
        return tuple(free_ports_near(*args, now))
    return render_cache().get_or_make(("free_ports", *args, version), lambda: tuple(free_ports_near(*args, now)))


@bp.post("/p/<code>/start")
@login_required
def start(code: str):
    """Reserve the hold and start; a double tap lands on the same session."""
    port = get_port_by_code_or_404(code)
    if not ActionForm().validate_on_submit():
        abort(400)
    if not _plug_confirmed(port):
        return redirect(url_for(".port_page", code=port.code))
    try:
        if request.form.get("use_pass") == "yes":
            session = _start_on_pass(port)
            if session is None:
                return redirect(url_for(".pass_start", code=port.code))
        else:
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
    if not _plug_confirmed(port):
        return redirect(url_for(".port_page", code=port.code))
    return _begin_topup(start_port=port, cancel=url_for(".port_page", code=port.code, _external=True))


PLUG_CONFIRMED = "plug_confirmed"


@bp.get("/p/<code>/pass")
@login_required
def pass_start(code: str):
    """Charge on my monthly pass: what it covers here today, then the start button (or why not)."""
    port = get_port_by_code_or_404(code)
    now = clock_now()
    live = charging.live_session_on_port(port.id)
    refusal = charging.refusal_for_port(port, now, live)
    monthly_pass, pass_refused = None, None
    try:
        monthly_pass = passes.usable_pass(current_user.id, port.shed.site_id, now)
    except passes.PassRefused as refused:
        pass_refused = pass_refusal(refused.code)
    return render_template(
        "resident/pass_start.html",
        port=port,
        shed=port.shed,
        monthly_pass=monthly_pass,
        pass_refused=pass_refused,
        state=port_state_now(port, live, now),
        form=ActionForm(),
        refusal_message=_refusal_message(refusal) if refusal else None,
    )


def _start_on_pass(port):
    """Start a charge on my monthly pass (free at stop, within the plan's limits); None if refused."""
    now = clock_now()
    try:
        monthly_pass = passes.usable_pass(current_user.id, port.shed.site_id, now)
    except passes.PassRefused as refused:
        flash(pass_refusal(refused.code), "error")
        return None
    terms = passes.session_terms(port.shed.tariff.terms, monthly_pass.plan)
    return charging.start_session(
        current_user.id,
        port,
        now=now,
        terms=terms,
        on_new=lambda session: passes.record_use(monthly_pass, session.id, now),
    )


def _plug_confirmed(port) -> bool:
    """A port with a bike left plugged in starts only after the resident confirms the plug is theirs.

    Starting would power whatever is plugged in and charge this resident's wallet for it. The
    confirmation is recorded as a port event (who, when), which staff see in the port's history.
    """
    now = clock_now()
    if port_state_now(port, charging.live_session_on_port(port.id), now) != "occupied":
        return True
    if request.form.get(PLUG_CONFIRMED) != "yes":
        flash(
            _(
                "Another bike is still plugged into this port. Unplug it, plug in your charger, "
                "then tick the box to confirm."
            ),
            "error",
        )
        return False
    db.session.add(
        PortEvent(
            port_id=port.id,
            at=now,
            kind=PLUG_CONFIRMED,
            detail=f"user {current_user.id} confirmed their own charger is plugged in",
        )
    )
    db.session.commit()
    return True


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
        topup_row = fulfilment.create_topup(
            current_user.id,
            form.amount.data,
            _topup_amounts(),
            current_app.config["CURRENCY"],
            provider.name,
            start_port,
        )
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
        result = payment_events.settle_payment(
            topup_row.id, payment, _provider(), start_ttl_seconds=ttl, record_fee=False
        )
    else:  # credited already (e.g. by the webhook): make sure its waiting charge started
        result = fulfilment.start_waiting_charge(topup_row, ttl_seconds=ttl)
        db.session.commit()
    db.session.refresh(topup_row)
    if result.problem:
        flash(_("We could not confirm this payment. If money was taken, it will be credited or refunded."), "error")
        return redirect(url_for(".wallet"))
    if topup_row.status == REFUNDED:
        return _unpaid(topup_row, REFUNDED)
    if result.session_id:
        return redirect(url_for(".session_page", session_id=result.session_id))
    if result.start_refused and topup_row.start_port_id is not None:
        return redirect(url_for(".topup_not_started", topup_id=topup_row.id))
    if result.start_refused:
        flash(_refusal_message(result.start_refused), "error")
    else:
        flash(_("%(amount)s added to your wallet.", amount=format_fen(topup_row.amount_fen)), "ok")
    if topup_row.start_port_id is not None:
        return redirect(url_for(".port_page", code=topup_row.start_port.code))
    return redirect(url_for(".wallet"))


@bp.get("/topup/<int:topup_id>/not-started")
@login_required
def topup_not_started(topup_id: int):
    """Paid, but the port was taken (or went out of service) meanwhile: the money is safe in the wallet."""
    topup_row = get_own_topup_or_404(current_user, topup_id)
    if topup_row.status != CREDITED or topup_row.start_port_id is None:
        abort(404)
    port = topup_row.start_port
    now = clock_now()
    refusal = charging.refusal_for_port(port, now)
    return render_template(
        "resident/topup_not_started.html",
        topup=topup_row,
        port=port,
        balance=ledger.wallet_balance(current_user.id),
        refusal_message=_refusal_message(refusal) if refusal else None,
        free_ports=free_ports_near(port.shed.site_id, port.shed_id, port.id, now),
    )


@bp.get("/s/<int:session_id>")
@login_required
def session_page(session_id: int):
    """A charge in progress or finished; the live part polls itself."""
    session = get_own_session_or_404(current_user, session_id)
    return render_page_or_partial("resident/session.html", "resident/_session_live.html", **_session_context(session))


@bp.get("/s/<int:session_id>/live")
@login_required
def session_live(session_id: int):
    """The live fragment; answers 286 once the session is over so polling stops."""
    session = get_own_session_or_404(current_user, session_id)
    response = render_page_or_partial(
        "resident/session.html", "resident/_session_live.html", **_session_context(session)
    )
    if not session.is_live:
        response.status_code = STOP_POLLING if response.status_code == 200 and request.htmx else 200
    return response


def _session_context(session: ChargeSession) -> dict:
    now = clock_now()
    terms = session.terms
    tier_watts = charging.current_tier_watts(session, now)
    tier = terms.tier_for(tier_watts)
    full_in = None  # seconds until a low-power charge is judged full
    if session.is_live and session.low_power_since is not None:
        full_in = max(0, terms.full_minutes * 60 - int((now - session.low_power_since).total_seconds()))
    port = session.port
    waiting_pickup = session.end_reason == charging.FULL and port_state_now(port, None, now) == "occupied"
    return dict(
        session=session,
        port=port,
        cost=charging.cost_now(session, now),
        elapsed=session.charged_seconds(now),
        limit_seconds=terms.paid_seconds(tier_watts),
        tier=tier,
        tier_floor=terms.tier_floor(tier),
        tier_watts=tier_watts,
        tier_provisional=charging.tier_is_provisional(session),
        full_in=full_in,
        waiting_pickup=waiting_pickup,
        end_note=_end_note(session),
        form=ActionForm(),
        terms=terms,
        refund=None
        if session.is_live
        else db.session.execute(
            select(SessionRefund).where(SessionRefund.session_id == session.id)
        ).scalar_one_or_none(),
        balance=ledger.wallet_balance(session.user_id),
    )


def _end_note(session: ChargeSession) -> str | None:
    """What staff wrote when they stopped this charge (shown to the resident), else None."""
    if session.end_reason != charging.STAFF_STOP:
        return None
    for event in reversed(session.events):
        if event.kind in ("ended", "failed"):
            # staff_stop records "<who>: <reason>"; the resident sees the reason, not the login
            return event.detail.split(": ", 1)[-1] or None
    return None


@bp.get("/s/<int:session_id>/stop")
@login_required
def stop_confirm(session_id: int):
    """Ask before stopping: one tap must not end a charge by mistake."""
    session = get_own_session_or_404(current_user, session_id)
    if not session.is_live:
        return redirect(url_for(".session_page", session_id=session.id))
    return render_template("resident/stop_confirm.html", **_session_context(session))


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
        db.session.commit()
    if request.htmx:
        return make_response("", 204, redirect=url_for(".session_page", session_id=session.id))
    return redirect(url_for(".session_page", session_id=session.id))


@bp.get("/wallet")
@login_required
def wallet():
    """Balance, top-up buttons, what can be withdrawn, recent top-ups and cash-outs."""
    provider = _provider()
    topups = (
        db.session.execute(
            select(TopUp)
            .where(TopUp.user_id == current_user.id, TopUp.status == CREDITED)
            .order_by(TopUp.id.desc())
            .limit(HISTORY_PAGE)
        )
        .scalars()
        .all()
    )
    refunded = dict(
        db.session.execute(
            select(TopUpRefund.topup_id, func.sum(TopUpRefund.amount_fen))
            .where(TopUpRefund.topup_id.in_([t.id for t in topups]), TopUpRefund.status != REFUND_FAILED)
            .group_by(TopUpRefund.topup_id)
        ).all()
    )
    cashouts = (
        db.session.execute(
            select(CashOut).where(CashOut.user_id == current_user.id).order_by(CashOut.id.desc()).limit(5)
        )
        .scalars()
        .all()
    )
    return render_template(
        "resident/wallet.html",
        balance=ledger.wallet_balance(current_user.id),
        amounts=_topup_amounts(),
        topups=topups,
        refunded=refunded,
        cashouts=cashouts,
        withdrawable=_withdrawable(provider),
        form=ActionForm(),
        provider=provider,
        CASHOUT_STATES=CASHOUT_STATES,
    )


STATEMENT_LABELS = {
    "topup": _l("Top-up"),
    "hold": _l("Prepaid for a charge (reserved)"),
    "settle": _l("Charge settled: unused prepaid money back"),
    "session_refund": _l("Refund from the operator"),
    "late_meter": _l("Charge: energy the port metered while offline"),
    "cashout": _l("Withdrawal"),
    "refund_failed": _l("Withdrawal failed: money back"),
    "pass_sale": _l("Monthly pass bought"),
    "pass_refund": _l("Monthly pass: unused days refunded"),
    "external_refund": _l("Payment refunded to you by Stripe or disputed at your bank: taken back"),
    "external_refund_failed": _l("That refund or dispute was reversed: money back"),
}
SESSION_KINDS = ("hold", "settle", "session_refund", "late_meter")


@bp.get("/wallet/statement")
@login_required
def statement():
    """钱包明细: every movement of my wallet with the balance after it; holds of live charges marked."""
    page = max(1, request.args.get("page", 1, type=int) or 1)
    lines, has_more = wallet_statement(current_user.id, limit=HISTORY_PAGE, offset=(page - 1) * HISTORY_PAGE)
    session_ids = {line.subject_id for line in lines if line.kind in SESSION_KINDS}
    sessions = {
        s.id: s for s in db.session.execute(select(ChargeSession).where(ChargeSession.id.in_(session_ids))).scalars()
    }
    refunds_by_session = {
        r.session_id: r
        for r in db.session.execute(select(SessionRefund).where(SessionRefund.session_id.in_(session_ids))).scalars()
    }
    return render_template(
        "resident/statement.html",
        lines=lines,
        has_more=has_more,
        page=page,
        sessions=sessions,
        session_refunds=refunds_by_session,
        labels=STATEMENT_LABELS,
        balance=ledger.wallet_balance(current_user.id),
    )


def _withdrawable(provider) -> int:
    return refunds.withdrawable_fen(current_user.id, provider.name, window_days=_refund_window())


def _refund_window() -> int:
    return int(current_app.config["REFUND_WINDOW_DAYS"])


def _cashout_message(refused: refunds.CashOutRefused) -> str:
    limit = format_fen(refused.limit_fen)
    return {
        "over_balance": _("That is more than your balance. You can withdraw at most %(limit)s.", limit=limit),
        "over_refundable": _(
            "Only %(limit)s can go back to the payment methods you topped up with "
            "(top-ups older than %(days)s days cannot be refunded).",
            limit=limit,
            days=_refund_window(),
        ),
    }.get(refused.code, _("Enter an amount above zero."))


@bp.route("/wallet/cashout", methods=["GET", "POST"])
@login_required
def cashout():
    """Withdraw wallet money: refunded to the card, Alipay or WeChat Pay of recent top-ups."""
    provider = _provider()
    form = CashOutForm()
    if form.validate_on_submit() and request.form.get("confirmed") != "yes":
        # First submit: check the amount, then ask before any money moves.
        withdrawable, balance = _withdrawable(provider), ledger.wallet_balance(current_user.id)
        if form.amount.data > withdrawable:
            code = "over_balance" if form.amount.data > balance else "over_refundable"
            form.amount.errors.append(_cashout_message(refunds.CashOutRefused(code, withdrawable)))
        else:
            return render_template(
                "resident/cashout_confirm.html",
                form=form,
                amount_fen=form.amount.data,
                balance=balance,
                provider=provider,
                request_key=request.form.get("request_key", "")[:64],
            )
    elif form.validate_on_submit():
        try:
            done = refunds.request_cashout(
                current_user.id,
                form.amount.data,
                provider,
                window_days=_refund_window(),
                request_key=request.form.get("request_key", "")[:64] or None,
            )
        except refunds.CashOutRefused as refused:
            form.amount.errors.append(_cashout_message(refused))
        else:
            flash(_("Withdrawal of %(amount)s requested.", amount=format_fen(done.amount_fen)), "ok")
            return redirect(url_for(".cashout_detail", cashout_id=done.id))
    withdrawable = _withdrawable(provider)
    if request.method == "GET" and withdrawable:
        form.amount.data = withdrawable
    return render_template(
        "resident/cashout.html",
        form=form,
        balance=ledger.wallet_balance(current_user.id),
        withdrawable=withdrawable,
        provider=provider,
        window_days=_refund_window(),
        request_key=secrets.token_urlsafe(24),
    )


@bp.get("/wallet/cashout/<int:cashout_id>")
@login_required
def cashout_detail(cashout_id: int):
    """One cash-out: how much went back to which top-up, and what is still on its way."""
    row = get_own_cashout_or_404(current_user, cashout_id)
    return render_template(
        "resident/cashout_detail.html", cashout=row, CASHOUT_STATES=CASHOUT_STATES, REFUND_STATES=REFUND_STATES
    )


@bp.get("/history")
@login_required
def history():
    """My charges, newest first, with cost and end reason."""
    page = max(1, request.args.get("page", 1, type=int) or 1)
    sessions = (
        db.session.execute(
            select(ChargeSession)
            .where(ChargeSession.user_id == current_user.id)
            .order_by(ChargeSession.id.desc())
            .offset((page - 1) * HISTORY_PAGE)
            .limit(HISTORY_PAGE + 1)
        )
        .scalars()
        .all()
    )
    sessions, has_more = sessions[:HISTORY_PAGE], len(sessions) > HISTORY_PAGE
    goodwill = dict(
        db.session.execute(
            select(SessionRefund.session_id, SessionRefund.amount_fen).where(
                SessionRefund.session_id.in_([s.id for s in sessions])
            )
        ).all()
    )
    return render_template("resident/history.html", sessions=sessions, page=page, has_more=has_more, goodwill=goodwill)


@bp.route("/bikes", methods=["GET", "POST"])
@login_required
def bikes():
    """Register my bikes by plate."""
    form = BikeForm()
    if form.validate_on_submit():
        if accounts.add_bike(current_user, form.plate.data, form.note.data or "") is None:
            form.plate.errors.append(_("This plate is already registered."))
        else:
            db.session.commit()
            flash(_("Bike registered."), "ok")
            return redirect(url_for(".bikes"))
    return render_template("resident/bikes.html", form=form, delete_form=ActionForm())


@bp.post("/bikes/<int:bike_id>/delete")
@login_required
def delete_bike(bike_id: int):
    """Remove one of my bikes."""
    if not ActionForm().validate_on_submit() or not accounts.remove_bike(current_user, bike_id):
        abort(404)
    db.session.commit()
    flash(_("Bike removed."), "ok")
    return redirect(url_for(".bikes"))


@bp.get("/p/<code>/qr.svg")
def port_qr_svg(code: str):
    """The port's QR code as SVG (encodes PUBLIC_BASE_URL/p/<code>)."""
    port = get_port_by_code_or_404(code)
    body = qr.qr_svg(qr.port_url(current_app.config["PUBLIC_BASE_URL"], port.code))
    return current_app.response_class(
        body, mimetype="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"}
    )


@bp.get("/p/<code>/qr.png")
def port_qr_png(code: str):
    """The port's QR code as PNG."""
    port = get_port_by_code_or_404(code)
    body = qr.qr_png(qr.port_url(current_app.config["PUBLIC_BASE_URL"], port.code))
    return current_app.response_class(body, mimetype="image/png", headers={"Cache-Control": "public, max-age=86400"})


@bp.route("/notifications", methods=["GET", "POST"])
@login_required
def notifications():
    """Choose how to be told when a charge ends or a port frees up: WeChat, SMS, or only this page."""
    available = get_notifiers(current_app._get_current_object())
    channels = notify_consent.active_channels(current_user.id)
    if request.method == "POST":
        if not ActionForm().validate_on_submit():
            abort(400)
        now = clock_now()
        if SMS in available:
            notify_consent.set_consent(
                current_user.id, SMS, current_user.login if request.form.get(SMS) == "yes" else None, now
            )
        if WECHAT in channels and request.form.get(WECHAT) != "yes":
            notify_consent.set_consent(current_user.id, WECHAT, None, now)
        db.session.commit()
        flash(_("Your choice is saved."), "ok")
        return redirect(url_for(".notifications"))
    return render_template("resident/notifications.html", available=available, channels=channels, form=ActionForm())


@bp.get("/notifications/wechat")
@login_required
def wechat_bind():
    """Inside WeChat: learn the resident's openid through WeChat's OAuth, then switch WeChat messages on."""
    notifier = get_notifiers(current_app._get_current_object()).get(WECHAT)
    if notifier is None:
        abort(404)
    session["wechat_state"] = state = secrets.token_urlsafe(16)
    return redirect(
        notify_wechat.oauth_authorize_url(
            notifier.app_id,
            url_for(".wechat_callback", _external=True),
            state,
            base=current_app.config.get("NOTIFY_WECHAT_OAUTH_BASE") or "https://open.weixin.qq.com",
        )
    )


@bp.get("/notifications/wechat/callback")
@login_required
def wechat_callback():
    """WeChat's OAuth redirect: exchange the code (no transaction open), record the consent."""
    notifier = get_notifiers(current_app._get_current_object()).get(WECHAT)
    state = session.pop("wechat_state", None)
    if notifier is None or not state or not secrets.compare_digest(state, request.args.get("state", "")):
        abort(400)
    user_id = current_user.id
    db.session.rollback()  # the exchange is a network call: no database transaction stays open
    try:
        openid = notify_wechat.oauth_openid(notifier, request.args.get("code", ""))
    except NotifyError:
        current_app.logger.warning("WeChat OAuth exchange failed", exc_info=True)
        flash(_("WeChat did not confirm your account. Please try again from inside WeChat."), "error")
        return redirect(url_for(".notifications"))
    notify_consent.set_consent(user_id, WECHAT, openid, clock_now())
    db.session.commit()
    flash(_("WeChat messages are on. In WeChat, allow the message types you want to receive."), "ok")
    return redirect(url_for(".notifications"))


@bp.post("/shed/<int:shed_id>/watch")
@login_required
def watch_shed(shed_id: int):
    """ "Tell me when a port here is free": one message on my channels, then the wish expires."""
    shed = db.session.get(Shed, shed_id)
    if shed is None or not ActionForm().validate_on_submit():
        abort(404)
    if not notify_consent.active_channels(current_user.id):
        flash(_("Choose WeChat or SMS first, then ask again."), "error")
        return redirect(url_for(".notifications"))
    watch = notify_events.watch_shed(current_user.id, shed.id, clock_now())
    db.session.commit()
    flash(
        _(
            "We will tell you once when a port in %(shed)s is free (until %(until)s).",
            shed=shed.name,
            until=_local_hm(watch.expires_at),
        ),
        "ok",
    )
    return redirect(
        request.form.get("back")
        if (request.form.get("back") or "").startswith("/") and not request.form.get("back", "").startswith("//")
        else url_for(".site_ports", site_id=shed.site_id)
    )


def _local_hm(moment) -> str:
    from chargeshed.web.jinja import local_time

    return local_time(moment, "%H:%M")


@bp.route("/password/forgot", methods=["GET", "POST"])
@limiter.limit("5/minute;20/hour", methods=["POST"])
def forgot_password():
    """Ask for a code by SMS; the answer is the same whether or not the number has an account."""
    notifiers = get_notifiers(current_app._get_current_object())
    form = ForgotForm()
    if SMS in notifiers and form.validate_on_submit():
        try:
            row_id = password_reset.request_code(form.phone.data)
        except password_reset.ResetRefused as refused:
            db.session.rollback()
            form.phone.errors.append(
                _("A code was sent a moment ago. Wait a minute before asking again.")
                if refused.code == "too_soon"
                else _("Too many codes today. Try again tomorrow or ask the property office.")
            )
        else:
            db.session.commit()
            if row_id is not None:  # send at once, outside any transaction; the worker retries if it fails
                send_rows([row_id], {SMS: notifiers[SMS]}, clock_now())
            flash(
                _(
                    "If this number has an account, a code is on its way by SMS. It works for %(m)s minutes.",
                    m=password_reset.CODE_MINUTES,
                ),
                "ok",
            )
            return redirect(url_for(".reset_password", phone=form.phone.data))
    return render_template("resident/password_forgot.html", form=form, sms=SMS in notifiers)


@bp.route("/password/reset", methods=["GET", "POST"])
@limiter.limit("10/minute", methods=["POST"])
def reset_password():
    """Enter the code and a new password; a code works once, for a few minutes, with a few guesses."""
    form = ResetForm()
    if request.method == "GET" and request.args.get("phone"):
        form.phone.data = request.args["phone"]
    if form.validate_on_submit():
        try:
            password_reset.reset_password(form.phone.data, form.code.data, form.password.data)
        except password_reset.ResetRefused:
            db.session.commit()  # the failed try still counts against the code
            form.code.errors.append(_("This code is wrong, used or expired. Ask for a new one."))
        else:
            db.session.commit()
            flash(_("Your password was changed. Sign in with the new one."), "ok")
            return redirect(url_for("auth.login"))
    return render_template("resident/password_reset.html", form=form)
