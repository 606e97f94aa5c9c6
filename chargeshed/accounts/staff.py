"""Staff administration: create staff users in a scope, issue temporary passwords, deactivate.

An admin manages every staff user; a site manager manages the patrol users of their own site. Every
change is written to the staff action log in the same transaction. Changes are flushed; the caller
commits. Deactivating a user signs them out at once (the session loader refuses inactive users on
their next request).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from sqlalchemy import false, func, select
from sqlalchemy.exc import IntegrityError

from chargeshed.accounts import audit
from chargeshed.accounts.models import (
    ROLE_ADMIN,
    ROLE_OPERATOR_STAFF,
    ROLE_PATROL,
    ROLE_SITE_MANAGER,
    STAFF_ROLES,
    User,
)
from chargeshed.accounts.services import revoke_sessions
from chargeshed.errors import Forbidden, NotFound
from chargeshed.extensions import db
from chargeshed.sites.models import Operator, Site

LOGIN_RE = re.compile(r"^[a-z][a-z0-9_.-]{2,31}$")
# Easy to read out over the phone: no 0/O, 1/l/I.
TEMP_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
TEMP_LENGTH = 12


class StaffRefused(Exception):
    """A staff change that cannot be made; `code` says why (the page words it)."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class NewStaff:
    """What the form asks for a new staff user."""

    login: str
    display_name: str
    role: str
    site_id: int | None = None
    operator_id: int | None = None


def manageable_roles(actor: User) -> tuple[str, ...]:
    """The roles this user may create and manage."""
    if actor.role == ROLE_ADMIN:
        return STAFF_ROLES
    if actor.role == ROLE_SITE_MANAGER and actor.site_id:
        return (ROLE_PATROL,)
    return ()


def staff_scope(actor: User, query):
    """Limit a query over User to the staff users this user may manage."""
    query = query.where(User.role.in_(STAFF_ROLES))
    if actor.role == ROLE_ADMIN:
        return query
    if actor.role == ROLE_SITE_MANAGER and actor.site_id:
        return query.where(User.role == ROLE_PATROL, User.site_id == actor.site_id)
    return query.where(false())


def managed_staff(actor: User) -> list[User]:
    """The staff users this user may manage, by role then login."""
    return list(db.session.execute(staff_scope(actor, select(User)).order_by(User.role, User.login)).scalars())


def get_staff_or_404(actor: User, user_id: int) -> User:
    """A staff user this user may manage; any other is NotFound."""
    user = db.session.execute(staff_scope(actor, select(User).where(User.id == user_id))).scalar_one_or_none()
    if user is None:
        raise NotFound(f"staff user {user_id}")
    return user


def temporary_password() -> str:
    """A random password to hand over once; its owner must replace it when signing in."""
    return "".join(secrets.choice(TEMP_ALPHABET) for _ in range(TEMP_LENGTH))


def _scope_of(user: User) -> dict:
    return {"site_id": user.site_id, "operator_id": user.operator_id}


def create_staff(actor: User, new: NewStaff) -> tuple[User, str]:
    """Create a staff user with a temporary password; returns (user, the password to hand over).

    Flushes; the caller commits (before it shows the password). A refusal adds nothing.
    """
    if new.role not in manageable_roles(actor):
        raise Forbidden(new.role)
    login = (new.login or "").strip().lower()
    if not LOGIN_RE.match(login):
        raise StaffRefused("login_format")
    site_id, operator_id = new.site_id, new.operator_id
    if actor.role == ROLE_SITE_MANAGER:
        site_id, operator_id = actor.site_id, None  # their own site's patrol, whatever the form said
    if new.role in (ROLE_SITE_MANAGER, ROLE_PATROL):
        if site_id is None or db.session.get(Site, site_id) is None:
            raise StaffRefused("site_missing")
        operator_id = None
    elif new.role == ROLE_OPERATOR_STAFF:
        if operator_id is None or db.session.get(Operator, operator_id) is None:
            raise StaffRefused("operator_missing")
        site_id = None
    else:
        site_id = operator_id = None
    if db.session.execute(select(func.count(User.id)).where(User.login == login)).scalar_one():
        raise StaffRefused("login_taken")
    password = temporary_password()
    user = User(
        login=login,
        role=new.role,
        display_name=(new.display_name or "").strip()[:80],
        site_id=site_id,
        operator_id=operator_id,
        must_change_password=True,
    )
    user.set_password(password)
    db.session.flush()  # the caller's pending work first: a failure there is not a taken login
    try:
        with db.session.begin_nested():  # someone taking the login meanwhile undoes only this user
            db.session.add(user)
            db.session.flush()
            audit.record(
                actor.id, audit.STAFF_CREATED, f"{login} ({new.role})", site_id=site_id, operator_id=operator_id
            )
    except IntegrityError:
        raise StaffRefused("login_taken") from None
    return user, password


def reset_password(actor: User, user: User, reason: str) -> str:
    """Give a staff user a temporary password they must change at their next sign-in.

    Flushes; the caller commits (before it shows the password).
    """
    if user.id == actor.id:
        raise StaffRefused("self")
    password = temporary_password()
    user.set_password(password)
    user.must_change_password = True
    revoke_sessions(user)  # whoever holds the old password's cookies is signed out
    audit.record(actor.id, audit.PASSWORD_RESET, user.login, reason=reason, **_scope_of(user))
    db.session.flush()
    return password


def set_active(actor: User, user: User, active: bool, reason: str) -> bool:
    """Deactivate (signed out once the caller commits) or reactivate a staff user; False when nothing
    changed. Flushes; the caller commits."""
    if user.id == actor.id:
        raise StaffRefused("self")
    if not active and not (reason or "").strip():
        raise StaffRefused("reason_missing")
    if user.is_active_account == active:
        return False
    user.is_active_account = active
    if not active:
        revoke_sessions(user)  # reactivating does not bring old cookies back
    audit.record(
        actor.id,
        audit.STAFF_REACTIVATED if active else audit.STAFF_DEACTIVATED,
        user.login,
        reason=reason,
        **_scope_of(user),
    )
    db.session.flush()
    return True
