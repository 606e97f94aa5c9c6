"""Password rules and password changes.

Guessable passwords are refused with zxcvbn (a maintained estimator that ships its own lists of
common passwords, names and words, and spots keyboard walks, dates and repeats), given the
user's own phone number and login as words an attacker would try first.
"""

from __future__ import annotations

from zxcvbn import zxcvbn

from chargeshed.accounts.models import User
from chargeshed.accounts.services import revoke_sessions

MIN_LENGTH = 8
# zxcvbn scores 0-4; 2 means "somewhat guessable": about 10^8 guesses, out of reach of online guessing.
MIN_SCORE = 2
# zxcvbn's run time grows with the length; anything longer than this is long enough.
CHECKED_LENGTH = 64
# Words every guesser tries against this service.
SERVICE_WORDS = ("chargeshed", "charge", "shed", "chongdian", "dianche")


def password_problem(password: str, *personal: str | None) -> str | None:
    """Why `password` is refused, or None. `personal`: the user's phone number, login and the like.

    Reasons: 'too_short', 'personal' (contains the phone number or login, or is a piece of it),
    'guessable'. A common password that happens to be a piece of the phone number (12345678 in
    13912345678) is called guessable: that is what the person needs to hear.
    """
    password = password or ""
    if len(password) < MIN_LENGTH:
        return "too_short"
    words = [p.lower() for p in personal if p and len(p) >= 4]
    lowered = password.lower()
    if any(word in lowered for word in words):
        return "personal"
    result = zxcvbn(password[:CHECKED_LENGTH], user_inputs=[*words, *SERVICE_WORDS])
    if result["score"] < MIN_SCORE:
        return "guessable"
    if any(lowered in word for word in words):
        return "personal"
    return None


def change_password(user: User, current: str, new: str) -> str | None:
    """Set a new password after checking the current one, and end the user's other sessions.

    Returns why it was refused, or None. Reasons: 'wrong_current', 'unchanged' and those of
    password_problem(). Flushes; the caller commits, then signs this browser in again.
    """
    if not user.check_password(current or ""):
        return "wrong_current"
    problem = password_problem(new, user.login)
    if problem:
        return problem
    if user.check_password(new):
        return "unchanged"
    user.set_password(new)
    user.must_change_password = False
    revoke_sessions(user)  # flushes
    return None
