"""Account services: register, authenticate, bikes. Changes are flushed; the caller commits."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from chargeshed.accounts.models import ROLE_RESIDENT, Bike, User, new_session_token
from chargeshed.extensions import autocommit_engine, db
from chargeshed.sites.models import Site

# A real hash to compare against when the login is unknown, so timing does not reveal accounts.
_DUMMY_HASH = None


def authenticate(login: str, password: str, normalise: Callable[[str], str]) -> User | None:
    """The active user with this login (phone normalised, or staff name) and password."""
    global _DUMMY_HASH
    login = (login or "").strip()
    candidates = {login, normalise(login)} - {""}
    user = db.session.execute(select(User).where(User.login.in_(candidates))).scalars().first()
    if user is None:
        from werkzeug.security import check_password_hash, generate_password_hash

        _DUMMY_HASH = _DUMMY_HASH or generate_password_hash("not-a-password")
        check_password_hash(_DUMMY_HASH, password)
        return None
    if not user.is_active or not user.check_password(password):
        return None
    return user


# Every signed-in request loads its user: one statement built once (cheaper than session.get's own).
_USER_BY_ID = select(User).where(User.id == bindparam("id"))


def user_by_id(user_id: int) -> User | None:
    """The user with this id, read outside the request's transaction (a request that only reads then
    never opens one)."""
    return db.session.execute(
        _USER_BY_ID, {"id": user_id}, bind_arguments={"bind": autocommit_engine()}
    ).scalar_one_or_none()


def user_for_cookie(cookie_id: str, read: Callable[[int], User | None] = user_by_id) -> User | None:
    """The active user a session or remember-me cookie names ("<id>.<token>"), if its token is current.

    `read` loads the user by id: a page may pass one that reads its own row in the same statement.
    """
    user_id, _, token = (cookie_id or "").partition(".")
    if not user_id.isdigit() or len(user_id) > 10 or not token:
        return None
    user = read(int(user_id))
    if user is None or not user.is_active or not user.matches_session(token):
        return None
    return user


def revoke_sessions(user: User) -> None:
    """End every session and remember-me cookie of `user` (logout everywhere, password change,
    deactivation) by replacing the secret they carry. Flushes; the caller commits."""
    user.session_token = new_session_token()
    db.session.flush()


def default_site_id() -> int | None:
    """The site new residents join (the first; one compound per deployment today)."""
    return db.session.execute(select(Site.id).order_by(Site.id).limit(1)).scalar_one_or_none()


def register_resident(
    phone: str, password: str, building: int | None, unit: int | None, site_id: int | None, room: str | None = None
) -> User | None:
    """Create a resident; None when the phone number is taken (nothing is added then).

    Flushes (the user gets its id); the caller commits.
    """
    try:
        return create_user(
            phone, password, ROLE_RESIDENT, building=building, unit=unit, room=room or None, site_id=site_id
        )
    except ValueError:
        return None


def create_user(login: str, password: str, role: str, **fields) -> User:
    """Create any user (CLI and demo); raises ValueError when the login exists (nothing is added then).

    Flushes (the user gets its id); the caller commits.
    """
    user = User(login=login, role=role, **fields)
    user.set_password(password)
    db.session.flush()  # the caller's pending work first: a failure there is not a taken login
    try:
        with db.session.begin_nested():  # a taken login undoes only this user
            db.session.add(user)
    except IntegrityError:
        raise ValueError(f"user {login} exists") from None
    return user


def set_locale(user: User, locale: str) -> None:
    """Remember the user's language. Flushes; the caller commits."""
    user.locale = locale
    db.session.flush()


def add_bike(user: User, plate: str, note: str = "") -> Bike | None:
    """Register a bike; None when the plate is registered already (nothing is added then).

    Flushes; the caller commits.
    """
    bike = Bike(owner_id=user.id, plate=plate, note=note)
    db.session.flush()  # the caller's pending work first: a failure there is not a taken plate
    try:
        with db.session.begin_nested():  # a taken plate undoes only this bike
            db.session.add(bike)
    except IntegrityError:
        return None
    return bike


def remove_bike(user: User, bike_id: int) -> bool:
    """Remove one of the user's own bikes; False when it is not theirs. Flushes; the caller commits."""
    bike = db.session.get(Bike, bike_id)
    if bike is None or bike.owner_id != user.id:
        return False
    db.session.delete(bike)
    db.session.flush()
    return True
