"""Staff goodwill refunds of charge sessions: a small form and the audit list (/operator/refunds)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from chargeshed.accounts.access import MONEY_ROLES, get_shed_or_404, may_refund, shed_scope
from chargeshed.accounts.models import ROLE_ADMIN
from chargeshed.charging.models import ChargeSession
from chargeshed.extensions import db
from chargeshed.money.format import format_fen
from chargeshed.payments import refunds
from chargeshed.payments.models import ExternalRefund, SessionRefund
from chargeshed.sites.models import Shed
from chargeshed.web.access import staff_required
from chargeshed.web.auth import safe_next
from chargeshed.web.payment_forms import SessionRefundForm

bp = Blueprint("refunds", __name__, url_prefix="/operator/refunds")

LIST_LIMIT = 100
OUTSIDE_STATES = {
    "taken": _l("Taken back from the wallet"),
    "shortfall": _l("Shortfall: the wallet did not have it all"),
    "before_credit": _l("Refunded before it was credited: credited less"),
    "unmatched": _l("Matches no top-up: check in Stripe"),
    "failed": _l("Failed at Stripe afterwards: booked back"),
    ("dispute", "failed"): _l("Dispute won: Stripe put the money back, booked back"),
}


def _session_or_404(session_id: int) -> tuple[ChargeSession, Shed]:
    """A charge session in a shed this staff member may see, and its shed; any other is a 404."""
    session = db.session.get(ChargeSession, session_id)
    if session is None:
        abort(404)
    return session, get_shed_or_404(current_user, session.shed_id)


def _refused_message(refused: refunds.SessionRefundRefused, session: ChargeSession) -> str:
    return {
        "nothing_to_refund": _("Only a finished charge that cost something can be refunded."),
        "amount": _("Refund between ¥0.01 and the charge's cost, %(cost)s.", cost=format_fen(session.cost_fen)),
        "reason": _("Give the reason for the refund."),
        "already_refunded": _("This charge has been refunded already."),
    }.get(refused.code, _("The refund could not be made."))


@bp.get("/")
@staff_required(*MONEY_ROLES)
def index():
    """Goodwill refunds in the sheds this staff member may see, newest first: who, how much, why."""
    rows = (
        db.session.execute(
            shed_scope(
                current_user,
                select(SessionRefund)
                .join(ChargeSession, ChargeSession.id == SessionRefund.session_id)
                .join(Shed, Shed.id == ChargeSession.shed_id),
            )
            .options(joinedload(SessionRefund.session), joinedload(SessionRefund.staff))
            .order_by(SessionRefund.id.desc())
            .limit(LIST_LIMIT)
        )
        .scalars()
        .all()
    )
    outside = []
    # Wallet top-ups belong to no shed or operator: refunds made at Stripe are the platform's to answer for.
    if current_user.role == ROLE_ADMIN:
        outside = (
            db.session.execute(select(ExternalRefund).order_by(ExternalRefund.id.desc()).limit(LIST_LIMIT))
            .scalars()
            .all()
        )
    return render_template("refunds/index.html", rows=rows, outside=outside, OUTSIDE_STATES=OUTSIDE_STATES)


@bp.route("/session/<int:session_id>", methods=["GET", "POST"])
@staff_required(*MONEY_ROLES)
def session_refund(session_id: int):
    """Refund (part of) one charge to the resident's wallet, with a reason kept on record.

    Everyone with money roles sees the page of a charge in their sheds; only an admin or the staff
    of the shed's operator may refund (accounts.access.may_refund): anyone else's POST is a 403."""
    session, shed = _session_or_404(session_id)
    can_refund = may_refund(current_user, shed)
    if request.method == "POST" and not can_refund:
        abort(403)
    existing = db.session.execute(
        select(SessionRefund).where(SessionRefund.session_id == session.id)
    ).scalar_one_or_none()
    form = SessionRefundForm()
    if existing is None and form.validate_on_submit():
        try:
            refunds.refund_session(current_user.id, session, form.amount.data, form.reason.data)
        except refunds.SessionRefundRefused as refused:
            form.amount.errors.append(_refused_message(refused, session))
        else:
            db.session.commit()
            flash(_("%(amount)s refunded to the resident's wallet.", amount=format_fen(form.amount.data)), "ok")
            return redirect(safe_next(request.args.get("next"), "refunds.index"))
    elif request.method == "POST" and existing is None and (form.amount.data or 0) > session.cost_fen:
        form.amount.errors.append(_refused_message(refunds.SessionRefundRefused("amount"), session))
    elif request.method == "GET":
        form.amount.data = session.cost_fen or None
    return render_template("refunds/session.html", session=session, existing=existing, form=form, can_refund=can_refund)
