"""Staff administration and the staff action log (back office).

Admins create staff users of any role and scope; site managers create and manage the patrol users of
their own site. New users and password resets get a temporary password shown once, which must be
replaced at the next sign-in; deactivated users are signed out at once.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select
from wtforms.fields.choices import SelectChoice

from chargeshed.accounts import audit, staff
from chargeshed.accounts.access import visible_sites
from chargeshed.accounts.models import ROLE_ADMIN, ROLE_OPERATOR_STAFF, ROLE_SITE_MANAGER
from chargeshed.extensions import db
from chargeshed.sites.models import Operator, Site
from chargeshed.web.access import staff_required
from chargeshed.web.staff_forms import NewStaffForm, ReasonForm

bp = Blueprint("staff", __name__, url_prefix="/manage")

STAFF_ADMIN_ROLES = (ROLE_ADMIN, ROLE_SITE_MANAGER)
LOG_ROLES = (ROLE_ADMIN, ROLE_SITE_MANAGER, ROLE_OPERATOR_STAFF)

ROLE_LABELS = {
    "admin": _l("Administrator"),
    "site_manager": _l("Site manager"),
    "operator_staff": _l("Operator staff"),
    "patrol": _l("Patrol"),
}
ACTION_LABELS = {
    audit.STAFF_STOP: _l("Stopped a charge"),
    audit.MAINTENANCE_ON: _l("Port under maintenance"),
    audit.MAINTENANCE_OFF: _l("Port back in service"),
    audit.PORT_RETIRED: _l("Port retired"),
    audit.PORT_RENAMED: _l("Port label changed"),
    audit.PORT_BINDING: _l("Port binding changed"),
    audit.STATEMENT_REVIEWED: _l("Statement reviewed"),
    audit.STATEMENT_ISSUED: _l("Statement issued"),
    audit.STAFF_CREATED: _l("Staff user created"),
    audit.PASSWORD_RESET: _l("Temporary password issued"),
    audit.STAFF_DEACTIVATED: _l("Staff user deactivated"),
    audit.STAFF_REACTIVATED: _l("Staff user reactivated"),
}


@bp.context_processor
def _labels() -> dict:
    return {"ROLE_LABELS": ROLE_LABELS, "ACTION_LABELS": ACTION_LABELS}


def _refusal(refused: staff.StaffRefused) -> str:
    return {
        "login_format": _(
            "Use 3 to 32 lower-case letters, digits, dots, dashes or underscores, starting with a letter."
        ),
        "login_taken": _("This sign-in name is taken."),
        "site_missing": _("Choose the site this user works for."),
        "operator_missing": _("Choose the operator this user works for."),
        "self": _("You cannot do this to your own account."),
        "reason_missing": _("Say why (it goes into the log)."),
    }.get(refused.code, _("That change was not possible."))


def _new_form() -> NewStaffForm:
    form = NewStaffForm()
    form.role.choices = [SelectChoice(role, str(ROLE_LABELS[role])) for role in staff.manageable_roles(current_user)]
    form.site.choices = [SelectChoice("", "–")] + [SelectChoice(s.id, s.name) for s in visible_sites(current_user)]
    operators = (
        db.session.execute(select(Operator).order_by(Operator.name)).scalars()
        if current_user.role == ROLE_ADMIN
        else []
    )
    form.operator.choices = [SelectChoice("", "–")] + [SelectChoice(o.id, o.name) for o in operators]
    return form


def _list_page(form: NewStaffForm | None = None, issued: tuple | None = None, status: int = 200):
    users = staff.managed_staff(current_user)
    site_ids = {u.site_id for u in users if u.site_id}
    operator_ids = {u.operator_id for u in users if u.operator_id}
    return render_template(
        "manage/staff.html",
        users=users,
        site_names=dict(db.session.execute(select(Site.id, Site.name).where(Site.id.in_(site_ids))).all()),
        operator_names=dict(
            db.session.execute(select(Operator.id, Operator.name).where(Operator.id.in_(operator_ids))).all()
        ),
        form=form or _new_form(),
        issued=issued,
        reason_form=ReasonForm(formdata=None),
        is_admin=current_user.role == ROLE_ADMIN,
    ), status


@bp.get("/staff")
@staff_required(*STAFF_ADMIN_ROLES)
def staff_list():
    """The staff users this user manages, and the form to add one."""
    return _list_page()


@bp.post("/staff")
@staff_required(*STAFF_ADMIN_ROLES)
def staff_create():
    """Create a staff user; the temporary password is shown once, on this answer only."""
    form = _new_form()
    if form.validate_on_submit():
        new = staff.NewStaff(
            form.login.data, form.display_name.data, form.role.data, form.site.data, form.operator.data
        )
        try:
            user, password = staff.create_staff(current_user, new)
        except staff.StaffRefused as refused:
            (form.login if refused.code.startswith("login") else form.role).errors.append(_refusal(refused))
        else:
            db.session.commit()  # stored before its password is shown
            return _list_page(issued=(user, password))
    return _list_page(form, status=400)


@bp.post("/staff/<int:user_id>/password")
@staff_required(*STAFF_ADMIN_ROLES)
def staff_reset_password(user_id: int):
    """Issue a temporary password (shown once); the user must choose their own at the next sign-in."""
    user = staff.get_staff_or_404(current_user, user_id)
    form = ReasonForm()
    if not form.validate_on_submit():
        return _list_page(status=400)
    try:
        password = staff.reset_password(current_user, user, form.reason.data or "")
    except staff.StaffRefused as refused:
        flash(_refusal(refused), "error")
        return redirect(url_for(".staff_list"), code=303)
    db.session.commit()  # stored before the password is shown
    return _list_page(issued=(user, password))


@bp.post("/staff/<int:user_id>/active")
@staff_required(*STAFF_ADMIN_ROLES)
def staff_set_active(user_id: int):
    """Deactivate (signed out at once; a reason is required) or reactivate a staff user."""
    user = staff.get_staff_or_404(current_user, user_id)
    form = ReasonForm()
    active = request.form.get("active") == "1"
    if form.validate_on_submit():
        try:
            staff.set_active(current_user, user, active, form.reason.data or "")
        except staff.StaffRefused as refused:
            flash(_refusal(refused), "error")
        else:
            db.session.commit()
            flash(
                _("%(login)s can sign in again.", login=user.login)
                if active
                else _("%(login)s is signed out and can no longer sign in.", login=user.login),
                "ok",
            )
    return redirect(url_for(".staff_list"), code=303)


@bp.get("/audit")
@staff_required(*LOG_ROLES)
def audit_log():
    """Who did what, when and why, in the sites or for the operator this user may see."""
    action = request.args.get("action", "")
    action = action if action in ACTION_LABELS else ""
    page = max(1, min(request.args.get("page", 1, type=int) or 1, 10_000))
    rows, has_more = audit.recent(current_user, action or None, page)
    return render_template("manage/audit.html", rows=rows, has_more=has_more, page_no=page, action=action)
