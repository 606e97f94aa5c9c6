"""Back-office forms (Flask-WTF, CSRF on every POST) with messages staff understand."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, NumberRange, Optional, ValidationError

from chargeshed.web.bounds import DateField, IntegerField

NUMBERS_HELP = _l("For example 1-12 or 13, 14, 20-24.")
NUMBERS_RULES = [DataRequired(_l("Enter the numbers of the new ports.")), Length(max=200)]


class MaintenanceForm(FlaskForm):
    """Put a port in maintenance (on) or back in service (off)."""

    mode = SelectField(choices=[SelectChoice("on"), SelectChoice("off")], validators=[DataRequired()])


class StaffStopForm(FlaskForm):
    """Stop the running charge as staff; the reason is kept with the session."""

    reason = TextAreaField(
        _l("Reason"),
        validators=[
            DataRequired(_l("Say why you stop this charge.")),
            Length(min=3, max=200, message=_l("Use 3 to 200 characters.")),
        ],
    )


class RenamePortForm(FlaskForm):
    """The label shown under the port number."""

    label = StringField(_l("Label"), validators=[Length(max=80, message=_l("Use at most 80 characters."))])


class PortNumbersForm(FlaskForm):
    """Bulk add ports by number ranges."""

    numbers = StringField(_l("Port numbers"), description=NUMBERS_HELP, validators=NUMBERS_RULES)


class ShedForm(FlaskForm):
    """A shed's name and location."""

    name = StringField(
        _l("Name"),
        validators=[
            DataRequired(_l("Enter the shed's name.")),
            Length(max=80, message=_l("Use at most 80 characters.")),
        ],
    )
    location = StringField(
        _l("Location"),
        description=_l("Where it is, e.g. north side of building 4."),
        validators=[Length(max=255, message=_l("Use at most 255 characters."))],
    )


class NewShedForm(ShedForm):
    """A new shed with its operator, tariff and first ports."""

    operator_id = SelectField(
        _l("Operator"), coerce=int, validate_choice=True, validators=[DataRequired(_l("Choose the operator."))]
    )
    tariff_id = SelectField(
        _l("Tariff"), coerce=int, validate_choice=True, validators=[DataRequired(_l("Choose a tariff."))]
    )
    numbers = StringField(_l("Port numbers"), default="1-10", description=NUMBERS_HELP, validators=NUMBERS_RULES)


class SessionFilterForm(FlaskForm):
    """Filters of the sessions list (GET, no CSRF needed)."""

    class Meta:
        csrf = False

    shed = SelectField(_l("Shed"), coerce=int, default=0, validate_choice=True)
    port = IntegerField(
        _l("Port no."),
        validators=[Optional(), NumberRange(min=1, max=999, message=_l("Enter a port number from 1 to 999."))],
    )
    resident = StringField(
        _l("Resident phone"), validators=[Optional(), Length(max=20, message=_l("Use at most 20 characters."))]
    )
    date_from = DateField(_l("From"), validators=[Optional()])
    date_to = DateField(_l("To"), validators=[Optional()])
    reason = SelectField(_l("End reason"), default="", validate_choice=True)

    def validate_date_to(self, field):
        if field.data and self.date_from.data and field.data < self.date_from.data:
            raise ValidationError(_l("The end date is before the start date."))


class RangeForm(FlaskForm):
    """The date range (and optionally one shed) of the usage charts (GET, no CSRF needed)."""

    class Meta:
        csrf = False

    shed = SelectField(_l("Shed"), coerce=int, default=0, validate_choice=True)
    date_from = DateField(_l("From"), validators=[Optional()])
    date_to = DateField(_l("To"), validators=[Optional()])

    def validate_date_to(self, field):
        if field.data and self.date_from.data and field.data < self.date_from.data:
            raise ValidationError(_l("The end date is before the start date."))
