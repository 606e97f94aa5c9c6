"""Forms of the resident pages added with notifications, password reset and monthly passes."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import IntegerField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, EqualTo, InputRequired, Length, NumberRange, Regexp

from chargeshed.web.forms import phone_field
from chargeshed.web.payment_forms import YuanField


class ForgotForm(FlaskForm):
    """Ask for a reset code by SMS."""

    phone = phone_field()


class ResetForm(FlaskForm):
    """Set a new password with the code from the SMS."""

    phone = phone_field()
    code = StringField(
        _l("Code from the SMS"),
        filters=[lambda v: (v or "").replace(" ", "")],
        validators=[
            DataRequired(_l("Enter the 6-digit code.")),
            Regexp(r"^\d{6}$", message=_l("Enter the 6-digit code.")),
        ],
    )
    password = PasswordField(
        _l("New password"),
        validators=[
            DataRequired(_l("Choose a new password.")),
            Length(min=8, max=128, message=_l("Use at least 8 characters.")),
        ],
    )
    confirm = PasswordField(
        _l("Repeat new password"), validators=[EqualTo("password", message=_l("The passwords do not match."))]
    )


TIER_CHOICES = [(200, "0–200 W"), (400, "0–400 W"), (600, "0–600 W"), (800, "0–800 W")]


class PassPlanForm(FlaskForm):
    """A monthly-pass plan (the operator's offer for one site)."""

    name = StringField(_l("Name"), validators=[DataRequired(_l("Give the plan a name.")), Length(max=60)])
    price = YuanField(_l("Price (¥)"))
    days = IntegerField(
        _l("Days valid"),
        validators=[InputRequired(_l("Enter a number of days.")), NumberRange(1, 366, _l("From 1 to 366 days."))],
    )
    charges_per_day = IntegerField(
        _l("Charges a day"),
        validators=[InputRequired(_l("Enter a number.")), NumberRange(1, 10, _l("From 1 to 10 charges a day."))],
    )
    hours_per_charge = IntegerField(
        _l("Hours per charge"),
        validators=[InputRequired(_l("Enter a number.")), NumberRange(1, 24, _l("From 1 to 24 hours."))],
    )
    max_watts = SelectField(_l("Up to the power tier"), coerce=int, choices=TIER_CHOICES, default=400)
