"""Forms for money going back: resident cash-out and staff goodwill refunds (amounts in yuan)."""

from __future__ import annotations

import re

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import Field, TextAreaField
from wtforms.validators import DataRequired, Length, StopValidation
from wtforms.widgets import TextInput

YUAN_RE = re.compile(r"^(\d{1,7})(?:[.,](\d{1,2}))?$")


def parse_yuan(text: str | None) -> int | None:
    """'12', '12.5', '¥12.50' -> fen (1200, 1250, 1250); None when it is not an amount."""
    cleaned = re.sub(r"[\s¥￥元]", "", text or "")
    match = YUAN_RE.match(cleaned)
    if not match:
        return None
    return int(match.group(1)) * 100 + int((match.group(2) or "0").ljust(2, "0"))


class YuanField(Field):
    """An amount typed in yuan, kept as integer fen in `data` (never a float)."""

    widget = TextInput()

    def __init__(self, label=None, validators=None, **kwargs):
        kwargs.setdefault("render_kw", {"inputmode": "decimal", "autocomplete": "off"})
        super().__init__(label, validators, **kwargs)

    def _value(self) -> str:
        if self.raw_data:
            return self.raw_data[0]
        return f"{self.data // 100}.{self.data % 100:02d}" if isinstance(self.data, int) else ""

    def process_formdata(self, valuelist):
        if not valuelist or not valuelist[0].strip():
            self.data = None
            return
        self.data = parse_yuan(valuelist[0])
        if self.data is None:
            raise ValueError(_l("Enter an amount in yuan, e.g. 12.50."))

    def pre_validate(self, form):
        if self.errors:
            raise StopValidation()
        if self.data is None:
            raise StopValidation(_l("Enter an amount in yuan, e.g. 12.50."))
        if self.data <= 0:
            raise StopValidation(_l("Enter an amount above zero."))


class CashOutForm(FlaskForm):
    """How much of the wallet to withdraw."""

    amount = YuanField(_l("Amount to withdraw (¥)"))


class SessionRefundForm(FlaskForm):
    """A goodwill refund of one charge: amount and the reason, for the record."""

    amount = YuanField(_l("Amount to refund (¥)"))
    reason = TextAreaField(
        _l("Reason (kept on record)"),
        validators=[
            DataRequired(_l("Give the reason for the refund.")),
            Length(min=3, max=255, message=_l("Use 3 to 255 characters.")),
        ],
    )
