"""Forms (Flask-WTF: CSRF on every POST) with messages residents understand."""

from __future__ import annotations

import re

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, NumberRange, Optional, Regexp, ValidationError

from chargeshed.web.bounds import IntegerField

PHONE_RE = r"^1[3-9]\d{9}$"
# 房号 as on the door: floor and room digits (302, 1201), sometimes with a letter (1201A).
ROOM_RE = r"^\d{1,5}[A-Z]?$"
# What a refused password is told (chargeshed.accounts.passwords.password_problem's reasons).
PASSWORD_MESSAGES = {
    "too_short": _l("Use at least 8 characters."),
    "personal": _l("Do not use your phone number or login in your password."),
    "guessable": _l("This password is too easy to guess. Use a longer one, mixing words, letters and digits."),
}


def check_password_strength(field, *personal: str | None) -> None:
    """Form validation: raise ValidationError with a clear message when the password is refused."""
    from chargeshed.accounts.passwords import password_problem

    problem = password_problem(field.data or "", *personal)
    if problem:
        raise ValidationError(PASSWORD_MESSAGES[problem])


# Chinese plates for e-bikes vary by city; accept letters, digits and CJK, 4-12 characters.
PLATE_RE = re.compile(r"^[0-9A-Z\u4e00-\u9fff·-]{4,12}$")


def normalise_phone(value: str | None) -> str:
    """Digits only, without +86 or spaces."""
    digits = re.sub(r"\D", "", value or "")
    return digits[2:] if digits.startswith("86") and len(digits) == 13 else digits


def phone_field() -> StringField:
    """A resident's mainland mobile number, normalised (no +86, no spaces) and checked."""
    return StringField(
        _l("Phone number"),
        filters=[normalise_phone],
        validators=[
            DataRequired(_l("Enter your phone number.")),
            Regexp(PHONE_RE, message=_l("Enter an 11-digit mainland mobile number.")),
        ],
    )


def typed_port(typed: str | None):
    """The port a code typed from a sticker names: (normalised code, Port or None, message or None).

    Nothing typed gives ("", None, None); a code of the wrong length or of no port gives a message
    saying so (used by /go and by the hazard report's compound finder)."""
    from sqlalchemy import select

    from chargeshed.extensions import db
    from chargeshed.sites.codes import CODE_LENGTH, normalise_code
    from chargeshed.sites.models import Port

    code = normalise_code(typed or "")
    if not code:
        return "", None, None
    if len(code) != CODE_LENGTH:
        return (
            code,
            None,
            _("A port code has %(n)s letters and digits; you typed %(typed)s.", n=CODE_LENGTH, typed=code),
        )
    port = db.session.execute(select(Port).where(Port.code == code)).scalar_one_or_none()
    if port is None:
        return code, None, _("No port has the code %(code)s. Check it against the sign on the port.", code=code)
    return code, port, None


def normalise_room(value: str | None) -> str:
    """'1201室', ' 1201 ' -> '1201'; upper-case letters."""
    return re.sub(r"[\s室号]", "", value or "").upper()


def normalise_plate(value: str | None) -> str:
    """Upper case, no spaces."""
    return re.sub(r"\s", "", value or "").upper()


class LoginForm(FlaskForm):
    """Sign in with phone (residents) or user name (staff)."""

    login = StringField(_l("Phone number"), validators=[DataRequired(_l("Enter your phone number.")), Length(max=64)])
    password = PasswordField(_l("Password"), validators=[DataRequired(_l("Enter your password.")), Length(max=128)])
    remember = BooleanField(_l("Keep me signed in on this phone"), default=True)


class RegisterForm(FlaskForm):
    """A new resident account."""

    phone = phone_field()
    password = PasswordField(
        _l("Password"),
        validators=[
            DataRequired(_l("Choose a password.")),
            Length(min=8, max=128, message=_l("Use at least 8 characters.")),
        ],
    )
    confirm = PasswordField(
        _l("Repeat password"), validators=[EqualTo("password", message=_l("The passwords do not match."))]
    )
    building = IntegerField(
        _l("Building (栋)"),
        validators=[Optional(), NumberRange(min=1, max=99, message=_l("Enter a building number from 1 to 99."))],
    )
    unit = IntegerField(
        _l("Unit (单元)"),
        validators=[
            Optional(),
            NumberRange(
                min=1,
                max=20,
                message=_l("Enter a unit number from 1 to 20. A room number such as 1201 goes in the Room field."),
            ),
        ],
    )
    room = StringField(
        _l("Room (房号), e.g. 1201"),
        filters=[normalise_room],
        validators=[Optional(), Regexp(ROOM_RE, message=_l("Enter the room number on your door, e.g. 1201 or 302."))],
    )

    def validate_password(self, field):
        check_password_strength(field, self.phone.data)


class BikeForm(FlaskForm):
    """Register a bike by plate."""

    plate = StringField(_l("Plate"), filters=[normalise_plate], validators=[DataRequired(_l("Enter the plate."))])
    note = StringField(_l("Note (colour, model)"), validators=[Length(max=80)])

    def validate_plate(self, field):
        if not PLATE_RE.match(field.data or ""):
            raise ValidationError(_l("Use 4 to 12 letters, digits or Chinese characters."))


class ActionForm(FlaskForm):
    """A button that only needs the CSRF token (start, stop, pay)."""


class TopUpForm(FlaskForm):
    """Choose a top-up amount (fen); checked against the configured amounts."""

    amount = IntegerField(validators=[DataRequired(_l("Choose an amount."))])
