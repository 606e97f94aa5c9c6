"""Password changes."""

from __future__ import annotations

from chargeshed.accounts.models import User
from chargeshed.extensions import db

MIN_LENGTH = 8


def change_password(user: User, current: str, new: str) -> str | None:
    """Set a new password after checking the current one. Returns why it was refused, or None. Commits.

    Reasons: 'wrong_current', 'too_short', 'unchanged'.
    """
    if not user.check_password(current or ""):
        return "wrong_current"
    if len(new or "") < MIN_LENGTH:
        return "too_short"
    if user.check_password(new):
        return "unchanged"
    user.set_password(new)
    user.must_change_password = False
    db.session.commit()
    return None
