"""Text that leaves the app in a file people open in a spreadsheet: CSV, XLSX and PDF text.

A cell that starts with =, +, -, @ (or a tab, carriage return or line feed before one) is read by
Excel, WPS and LibreOffice as a formula, which can fetch URLs or run commands when opened
(formula or CSV injection). Every export passes its text through `neutral_text`, which puts an
apostrophe in front of such text, the spreadsheets' own mark for "this is text". Plain numbers
(-12.50) are left alone so amounts stay numbers.
"""

from __future__ import annotations

import re

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_PLAIN_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)*%?")


def neutral_text(value) -> str:
    """`value` as text a spreadsheet shows as text, never evaluates (None becomes "")."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def neutral_cell(value):
    """For cell-typed files (XLSX): numbers, dates and booleans as they are, any text neutralised."""
    if isinstance(value, str):
        return neutral_text(value)
    return value
