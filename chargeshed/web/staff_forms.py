"""Forms of staff administration (CSRF on every POST)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional


def _optional_int(value):
    return int(value) if value not in (None, "", "None") and str(value).isdigit() else None


class NewStaffForm(FlaskForm):
    """A new staff user: sign-in name, name shown, role and scope (site or operator)."""

    login = StringField(
        _l("Sign-in name"),
        description=_l("3 to 32 lower-case letters, digits, . _ -"),
        validators=[DataRequired(_l("Enter a sign-in name.")), Length(max=32)],
    )
    display_name = StringField(_l("Name shown"), validators=[Length(max=80)])
    role = SelectField(_l("Role"), validators=[DataRequired()])
    site = SelectField(_l("Site"), coerce=_optional_int, validators=[Optional()])
    operator = SelectField(_l("Operator"), coerce=_optional_int, validators=[Optional()])


class ReasonForm(FlaskForm):
    """A change to an account, with its reason for the log."""

    reason = TextAreaField(_l("Reason"), validators=[Length(max=200, message=_l("Use at most 200 characters."))])
