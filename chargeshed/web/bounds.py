"""Numbers and dates from requests, bounded where they enter: one place for every view and form.

The database stores ids and counts in 32-bit integers (PostgreSQL int4), and date arithmetic
overflows near 9999-12-31. So:

- `request.args.get(name, type=int)` (and `request.form`'s) give the default for a number outside
  the 32-bit range, as for any other unusable value (installed for the whole app by `init_app`);
- forms use this module's `IntegerField` and `DateField`: a number outside the range or a date
  outside FIRST_DATE … LAST_DATE is a form error with a clear message, never a database error.
"""

from __future__ import annotations

from datetime import date

from flask import Flask, Request
from flask_babel import lazy_gettext as _l
from werkzeug.datastructures import ImmutableMultiDict
from wtforms import fields

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
FIRST_DATE, LAST_DATE = date(2000, 1, 1), date(2099, 12, 31)


def bounded_int(value, default=None):
    """`value` as an int within the 32-bit range, else `default`."""
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return default
    return number if INT_MIN <= number <= INT_MAX else default


def bounded_date(value: date | None) -> date | None:
    """`value` when it lies between FIRST_DATE and LAST_DATE, else None."""
    return value if value is not None and FIRST_DATE <= value <= LAST_DATE else None


class BoundedMultiDict(ImmutableMultiDict):
    """Query and form values whose `get(..., type=int)` only yields numbers a database column holds."""

    def get(self, key, default=None, type=None):  # noqa: A002 (werkzeug's signature)
        if type is int:
            value = super().get(key)
            return default if value is None else bounded_int(value, default)
        return super().get(key, default, type)


class IntegerField(fields.IntegerField):
    """wtforms.IntegerField that refuses numbers a 32-bit database column cannot hold."""

    def process_formdata(self, valuelist):
        super().process_formdata(valuelist)
        if self.data is not None and not INT_MIN <= self.data <= INT_MAX:
            self.data = None
            raise ValueError(_l("This number is too large."))


class DateField(fields.DateField):
    """wtforms.DateField that refuses dates outside FIRST_DATE … LAST_DATE."""

    def process_formdata(self, valuelist):
        super().process_formdata(valuelist)
        if self.data is not None and bounded_date(self.data) is None:
            self.data = None
            raise ValueError(_l("Enter a date between 2000 and 2099."))


def init_app(app: Flask) -> None:
    """Make every request's query and form values bounded (keeping what extensions added to the
    request class, such as htmx's `request.htmx`)."""
    base: type[Request] = app.request_class
    app.request_class = type(
        "BoundedRequest",
        (base,),
        {"parameter_storage_class": BoundedMultiDict, "__doc__": "Request with bounded query and form values."},
    )
