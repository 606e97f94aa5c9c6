"""Forgotten password: a 6-digit code by SMS (rate-limited, expiring, single use, few guesses)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import ForeignKey, String, func, select, update
from sqlalchemy.orm import Mapped, mapped_column

from chargeshed.accounts.models import ROLE_RESIDENT, User
from chargeshed.accounts.services import revoke_sessions
from chargeshed.extensions import db
from chargeshed.notify.base import RESET_CODE, SMS
from chargeshed.notify.outbox import queue
from chargeshed.timeutil import now as clock_now

CODE_MINUTES = 10
RESEND_SECONDS = 60  # one code a minute per phone (the SMS provider limits this too)
DAILY_CODES = 5  # and a few a day
MAX_GUESSES = 5


class PasswordReset(db.Model):
    """One code sent to one resident's phone; only its keyed hash is stored."""

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=clock_now, index=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    guesses: Mapped[int] = mapped_column(default=0)


class ResetRefused(Exception):
    """Why a code cannot be sent or used now: too_soon, too_many, invalid."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def _hash(code: str) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"reset:{code}".encode(), hashlib.sha256).hexdigest()


def _resident(phone: str) -> User | None:
    return db.session.execute(
        select(User).where(User.login == phone, User.role == ROLE_RESIDENT, User.is_active_account.is_(True))
    ).scalar_one_or_none()


def request_code(phone: str, now: datetime | None = None) -> int | None:
    """Queue an SMS code for this phone's resident account; returns the outbox row id (None: no account).

    Raises ResetRefused("too_soon" / "too_many") for a phone asking too often. The caller commits, then
    may send the row at once (the worker sends it otherwise).
    """
    now = now or clock_now()
    user = _resident(phone)
    if user is None:
        return None
    recent = db.session.execute(
        select(func.count(PasswordReset.id), func.max(PasswordReset.created_at)).where(
            PasswordReset.user_id == user.id, PasswordReset.created_at > now - timedelta(days=1)
        )
    ).one()
    if recent[1] is not None and (now - recent[1]).total_seconds() < RESEND_SECONDS:
        raise ResetRefused("too_soon")
    if recent[0] >= DAILY_CODES:
        raise ResetRefused("too_many")
    code = f"{secrets.randbelow(10**6):06d}"
    reset = PasswordReset(
        user_id=user.id, code_hash=_hash(code), created_at=now, expires_at=now + timedelta(minutes=CODE_MINUTES)
    )
    db.session.add(reset)
    db.session.flush()
    row = queue(
        SMS,
        user.login,
        RESET_CODE,
        {"code": code, "minutes": str(CODE_MINUTES)},
        f"reset:{reset.id}",
        now,
        user_id=user.id,
    )
    return row.id if row is not None else None


def reset_password(phone: str, code: str, new_password: str, now: datetime | None = None) -> User:
    """Set a new password with a valid code (the newest unused one); the code then stops working and
    every session of the account ends.

    Raises ResetRefused("invalid") for a wrong, expired, used or over-guessed code. Every try counts
    as one of the code's MAX_GUESSES, claimed by an UPDATE before the code is compared: tries running
    at once wait for each other there, so they get no more guesses than tries one after another.
    Flushes; the caller commits, on ResetRefused too: the counted try is what burns the code.
    """
    now = now or clock_now()
    user = _resident(phone)
    reset = (
        None
        if user is None
        else db.session.execute(
            select(PasswordReset)
            .where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
            .order_by(PasswordReset.id.desc())
            .limit(1)
        ).scalar_one_or_none()
    )
    if reset is None:
        raise ResetRefused("invalid")
    claimed = db.session.execute(
        update(PasswordReset)
        .where(
            PasswordReset.id == reset.id,
            PasswordReset.used_at.is_(None),
            PasswordReset.expires_at > now,
            PasswordReset.guesses < MAX_GUESSES,
        )
        .values(guesses=PasswordReset.guesses + 1)
        .execution_options(synchronize_session=False)  # reset.guesses is not read again
    ).rowcount
    if not claimed or not hmac.compare_digest(reset.code_hash, _hash((code or "").strip())):
        raise ResetRefused("invalid")  # the claimed try stays in the caller's transaction
    reset.used_at = now
    user.set_password(new_password)
    revoke_sessions(user)  # whoever knew the old password is signed out everywhere
    return user
