"""User (resident or staff), Bike, and StaffAction (the audit log of what staff did)."""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import ForeignKey, String
from sqlalchemy import false as sa_false
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from chargeshed.extensions import db
from chargeshed.timeutil import now as clock_now

ROLE_RESIDENT = "resident"
ROLE_ADMIN = "admin"
ROLE_SITE_MANAGER = "site_manager"
ROLE_OPERATOR_STAFF = "operator_staff"
ROLE_PATROL = "patrol"
STAFF_ROLES = (ROLE_ADMIN, ROLE_SITE_MANAGER, ROLE_OPERATOR_STAFF, ROLE_PATROL)


def new_session_token() -> str:
    """A fresh per-user secret that every session and remember-me cookie of the user carries."""
    return secrets.token_hex(16)


class User(UserMixin, db.Model):
    """A person who signs in: residents by phone number, staff by user name."""

    id: Mapped[int] = mapped_column(primary_key=True)
    login: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), default=ROLE_RESIDENT)
    display_name: Mapped[str] = mapped_column(String(80), default="")
    site_id: Mapped[int | None] = mapped_column(ForeignKey("site.id"), index=True)
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operator.id"), index=True)
    building: Mapped[int | None]
    unit: Mapped[int | None]
    room: Mapped[str | None] = mapped_column(String(8))  # 房号 as written on the door, e.g. "1201"
    locale: Mapped[str | None] = mapped_column(String(8))
    is_active_account: Mapped[bool] = mapped_column(default=True)
    # Set when an admin (or site manager) issued a temporary password: the next sign-in must replace it.
    must_change_password: Mapped[bool] = mapped_column(default=False, server_default=sa_false())
    created_at: Mapped[datetime] = mapped_column(default=clock_now)
    # Part of every session and remember-me cookie; replacing it signs the user out everywhere.
    session_token: Mapped[str] = mapped_column(String(32), default=new_session_token)

    bikes: Mapped[list[Bike]] = relationship(back_populates="owner", order_by="Bike.id")

    def set_password(self, password: str) -> None:
        """Store a salted hash of the password, never the password."""
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        """True when the password matches the stored hash."""
        return check_password_hash(self.password_hash, password)

    def get_id(self) -> str:  # flask-login: stored in the session and the remember-me cookie
        """ "<id>.<session token>": a cookie stops working once the token is replaced."""
        if not self.session_token:
            self.session_token = new_session_token()
        return f"{self.id}.{self.session_token}"

    def matches_session(self, token: str) -> bool:
        """True when a cookie's token is the user's current one (constant-time comparison)."""
        return bool(self.session_token) and hmac.compare_digest(self.session_token, token)

    @property
    def is_active(self) -> bool:  # flask-login
        return self.is_active_account

    @property
    def is_staff(self) -> bool:
        """True for back-office roles."""
        return self.role in STAFF_ROLES


class Bike(db.Model):
    """A registered e-bike (plate), owned by a resident."""

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    plate: Mapped[str] = mapped_column(String(20), unique=True)
    note: Mapped[str] = mapped_column(String(80), default="")
    created_at: Mapped[datetime] = mapped_column(default=clock_now)

    owner: Mapped[User] = relationship(back_populates="bikes")


class StaffAction(db.Model):
    """One thing a staff member did, with when, on what, where and why (never edited, never deleted)."""

    __tablename__ = "staff_action"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=clock_now, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"), index=True)
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(120), default="")
    site_id: Mapped[int | None] = mapped_column(ForeignKey("site.id"), index=True)
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operator.id"), index=True)
    reason: Mapped[str] = mapped_column(String(255), default="")

    actor: Mapped[User | None] = relationship()
