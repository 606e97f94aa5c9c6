"""Operator back-office forms: agreements (shares in percent, prices in yuan) and statement actions."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, FieldList, Form, FormField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from chargeshed.settlement.agreements import MAX_PARTIES, PartyInput
from chargeshed.settlement.document import ROLE_LABELS
from chargeshed.settlement.models import FEES_PARTY, FEES_SHARED, ROLE_OTHER
from chargeshed.web.bounds import DateField

PARTY_ROWS = 4


def hundredths(text: str | None) -> int | None:
    """A decimal with at most two places as an integer number of hundredths ('45.5' -> 4550); None if not."""
    text = (text or "").strip().replace(",", ".").replace("%", "").replace("¥", "").strip()
    if not text or len(text) > 20:
        return None
    try:
        scaled = Decimal(text) * 100
        if not scaled.is_finite() or scaled != scaled.to_integral_value() or abs(scaled) > 10**12:
            return None
    except InvalidOperation:
        return None
    return int(scaled)


class PartyRow(Form):
    """One party line; a line left empty is ignored."""

    name = StringField(_l("Party"), validators=[Length(max=120, message=_l("Use at most 120 characters."))])
    role = SelectField(_l("Role"), choices=[SelectChoice(k, v) for k, v in ROLE_LABELS.items()], default=ROLE_OTHER)
    share = StringField(_l("Share (percent)"))
    pays_electricity = BooleanField(_l("Pays the electricity"))
    bears_fees = BooleanField(_l("Bears the fees"))

    @property
    def is_blank(self) -> bool:
        return not (self.name.data or "").strip() and not (self.share.data or "").strip()

    def validate_share(self, field):
        if self.is_blank:
            return
        if not (field.data or "").strip():
            raise ValidationError(_l("Enter this party's share in percent, e.g. 30 or 12.5."))
        value = hundredths(field.data)
        if value is None or not 0 <= value <= 10_000:
            raise ValidationError(_l("Enter a percentage from 0 to 100 with at most two decimals."))

    def validate_name(self, field):
        if not self.is_blank and not (field.data or "").strip():
            raise ValidationError(_l("Enter the party's name."))


class AgreementForm(FlaskForm):
    """A revenue-split agreement for one operator at one site, or at one of its sheds."""

    scope = SelectField(_l("Applies to"), coerce=int, validate_choice=True)
    valid_from = DateField(_l("Valid from"), validators=[DataRequired(_l("Enter the first day (YYYY-MM-DD)."))])
    valid_to = DateField(
        _l("Valid until (optional)"),
        validators=[Optional()],
        description=_l("Leave empty: it runs until a newer agreement starts."),
    )
    electricity_price = StringField(
        _l("Electricity pass-through (¥ per kWh)"),
        default="0.00",
        description=_l(
            "0 for none. The party that pays the electricity bill gets the metered energy at "
            "this price before the split."
        ),
    )
    fee_mode = SelectField(
        _l("Payment fees"),
        choices=[
            SelectChoice(FEES_SHARED, _l("Deducted before the split")),
            SelectChoice(FEES_PARTY, _l("Borne by one party (tick it below)")),
        ],
    )
    note = StringField(_l("Note (optional)"), validators=[Length(max=255, message=_l("Use at most 255 characters."))])
    parties = FieldList(FormField(PartyRow), min_entries=PARTY_ROWS, max_entries=MAX_PARTIES)

    def validate_electricity_price(self, field):
        value = hundredths(field.data or "0")
        if value is None or value < 0:
            raise ValidationError(_l("Enter a price in yuan with at most two decimals, e.g. 0.62."))

    def electricity_fen(self) -> int:
        """The price per kWh in fen (validated)."""
        return hundredths(self.electricity_price.data or "0") or 0

    def party_inputs(self) -> list[PartyInput]:
        """The filled-in party lines (validated)."""
        return [
            PartyInput(
                row.form.name.data.strip(),
                row.form.role.data,
                hundredths(row.form.share.data) or 0,
                bool(row.form.pays_electricity.data),
                bool(row.form.bears_fees.data),
            )
            for row in self.parties
            if not row.form.is_blank
        ]


class PeriodForm(FlaskForm):
    """A custom statement period (GET, no CSRF)."""

    class Meta:
        csrf = False

    start = DateField(_l("First day"), validators=[DataRequired(_l("Enter the first day (YYYY-MM-DD)."))])
    end = DateField(_l("Last day"), validators=[DataRequired(_l("Enter the last day (YYYY-MM-DD)."))])
