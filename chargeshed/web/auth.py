"""Sign up, sign in, sign out, language."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField
from wtforms.validators import DataRequired, EqualTo, Length

from chargeshed.accounts import services as accounts
from chargeshed.accounts.access import MANAGE_ROLES
from chargeshed.accounts.models import ROLE_PATROL
from chargeshed.accounts.passwords import MIN_LENGTH
from chargeshed.accounts.passwords import change_password as change_password_service
from chargeshed.extensions import db, limiter
from chargeshed.i18n import LANG_COOKIE
from chargeshed.web.forms import PASSWORD_MESSAGES, LoginForm, RegisterForm, check_password_strength, normalise_phone

bp = Blueprint("auth", __name__)


def safe_next(target: str | None, default: str = "resident.home") -> str:
    """Only same-site relative paths are followed after sign-in."""
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for(default)


def landing(user) -> str:
    """Where a user lands after signing in: staff in their back office, residents at home."""
    if user.role in MANAGE_ROLES:
        return "manage.index"
    if user.role == ROLE_PATROL:
        return "safety.cases"
    return "resident.home"


class PasswordForm(FlaskForm):
    """Change one's own password."""

    current = PasswordField(
        _l("Current password"), validators=[DataRequired(_l("Enter your current password.")), Length(max=128)]
    )
    new = PasswordField(
        _l("New password"),
        validators=[
            DataRequired(_l("Choose a new password.")),
            Length(min=MIN_LENGTH, max=128, message=_l("Use at least 8 characters.")),
        ],
    )
    confirm = PasswordField(
        _l("Repeat new password"), validators=[EqualTo("new", message=_l("The passwords do not match."))]
    )

    def validate_new(self, field):
        check_password_strength(field, current_user.login)


def _account_key() -> str:
    """Rate-limit key of the account a sign-in names (so guesses from many addresses add up)."""
    login = (request.form.get("login") or "").strip()[:64]
    return "account:" + (normalise_phone(login) or login.lower())


def _failed(response) -> bool:
    """A sign-in that did not succeed (the form is shown again)."""
    return response.status_code != 302


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit("10/minute;50/hour", methods=["POST"])  # per address
@limiter.limit("10/minute;30/hour", methods=["POST"], key_func=_account_key, deduct_when=_failed)
def login():
    """Sign in by phone (or staff user name) and password."""
    form = LoginForm()
    if form.validate_on_submit():
        user = accounts.authenticate(form.login.data, form.password.data, normalise_phone)
        if user is None:
            form.password.errors.append(_("Phone number or password is wrong."))
        else:
            login_user(user, remember=form.remember.data)
            return redirect(safe_next(request.args.get("next"), landing(user)))
    return render_template("auth/login.html", form=form, next=request.args.get("next", ""))


def _phone_was_taken(_response) -> bool:
    return bool(g.get("phone_taken"))


@bp.route("/register", methods=["GET", "POST"])
@limiter.limit("5/minute;30/hour", methods=["POST"])
@limiter.limit("10/day", methods=["POST"], deduct_when=_phone_was_taken)
def register():
    """Create a resident account; the phone number is the login.

    Decision: the phone number is the login, so a taken number is said so (the person most likely has
    an account and should sign in), while sign-in never tells whether a number is registered. To keep
    the two consistent, the answer is budgeted: one address gets at most 10 "taken" answers a day (on
    top of 5 sign-ups a minute, 30 an hour). Once the budget is spent, every registration from that
    address gets the same 429, taken number or not, so it stops telling, as sign-in does. A free
    number is never told without creating its account (tests/web/test_sessions_and_passwords.py).
    """
    form = RegisterForm()
    if form.validate_on_submit():
        user = accounts.register_resident(
            form.phone.data,
            form.password.data,
            form.building.data,
            form.unit.data,
            site_id=accounts.default_site_id(),
            room=form.room.data,
        )
        if user is None:
            g.phone_taken = True
            form.phone.errors.append(_("This phone number already has an account. Sign in instead."))
        else:
            db.session.commit()
            login_user(user, remember=True)
            flash(_("Welcome! Your account is ready."), "ok")
            return redirect(safe_next(request.args.get("next")))
    return render_template("auth/register.html", form=form, next=request.args.get("next", ""))


@bp.post("/logout")
@login_required
def logout():
    """Sign out, on every device: the session and remember-me cookies of this user stop working
    (a copied cookie too)."""
    staff = current_user.is_staff
    accounts.revoke_sessions(current_user)
    db.session.commit()
    logout_user()
    return redirect(url_for("auth.login" if staff else "resident.home"))


# What someone with a temporary password may still open before choosing their own.
OPEN_WITH_TEMPORARY_PASSWORD = {"auth.change_password", "auth.logout", "auth.set_language", "static", "health.healthz"}


@bp.before_app_request
def _temporary_password_must_be_changed():
    """A temporary password (from an admin or site manager) opens only the password form."""
    if (
        current_user.is_authenticated
        and getattr(current_user, "must_change_password", False)
        and request.endpoint not in OPEN_WITH_TEMPORARY_PASSWORD
    ):
        flash(_("Choose your own password before you continue."), "error")
        return redirect(url_for("auth.change_password"))
    return None


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
@limiter.limit("10/hour", methods=["POST"])
def change_password():
    """Change my password (the current one is asked again)."""
    form = PasswordForm()
    if form.validate_on_submit():
        refused = change_password_service(current_user, form.current.data, form.new.data)
        if refused == "wrong_current":
            form.current.errors.append(_("This is not your current password."))
        elif refused == "unchanged":
            form.new.errors.append(_("Choose a password different from the current one."))
        elif refused:
            form.new.errors.append(PASSWORD_MESSAGES[refused])
        else:
            db.session.commit()
            # Other sessions ended with the change; this browser stays signed in.
            remembered = current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token") in request.cookies
            login_user(current_user._get_current_object(), remember=remembered)
            flash(_("Your password was changed."), "ok")
            return redirect(url_for(landing(current_user)))
    return render_template("auth/password.html", form=form), 400 if form.errors else 200


@bp.get("/lang/<code>")
def set_language(code: str):
    """Switch language (zh_CN or en), remembered in a cookie."""
    if code not in current_app.config["LANGUAGES"]:
        code = current_app.config["BABEL_DEFAULT_LOCALE"]
    response = redirect(safe_next(request.args.get("next")))
    response.set_cookie(
        LANG_COOKIE,
        code,
        max_age=365 * 24 * 3600,
        samesite="Lax",
        httponly=True,
        secure=current_app.config["SESSION_COOKIE_SECURE"],
    )
    if current_user.is_authenticated:
        accounts.set_locale(current_user, code)
        db.session.commit()
    return response
