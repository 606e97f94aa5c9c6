"""Money formatting: integer fen to ¥1.50."""

from __future__ import annotations


def format_fen(amount_fen: int, symbol: str = "¥") -> str:
    """Format integer fen as yuan with two decimals, e.g. 150 -> '¥1.50', -5 -> '-¥0.05'."""
    sign = "-" if amount_fen < 0 else ""
    yuan, fen = divmod(abs(int(amount_fen)), 100)
    return f"{sign}{symbol}{yuan:,}.{fen:02d}"
