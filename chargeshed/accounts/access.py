"""Access helpers: return the object the user may see, or abort (403 wrong role, 404 other tenant)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from flask import abort
from flask_login import current_user
from sqlalchemy import Select, false, select

from chargeshed.accounts.models import (
    ROLE_ADMIN,
    ROLE_OPERATOR_STAFF,
    ROLE_PATROL,
    ROLE_SITE_MANAGER,
    User,
)
from chargeshed.charging.models import ChargeSession
from chargeshed.extensions import db, login_manager
from chargeshed.payments.models import TopUp
from chargeshed.ports.models import Alert
from chargeshed.sites.models import Port, Shed, Site

# What each back-office area allows.
MANAGE_ROLES = (ROLE_ADMIN, ROLE_SITE_MANAGER, ROLE_OPERATOR_STAFF)
MONEY_ROLES = (ROLE_ADMIN, ROLE_OPERATOR_STAFF, ROLE_SITE_MANAGER)
SAFETY_ROLES = (ROLE_ADMIN, ROLE_SITE_MANAGER, ROLE_PATROL, ROLE_OPERATOR_STAFF)
SAFETY_WRITE_ROLES = (ROLE_ADMIN, ROLE_SITE_MANAGER, ROLE_PATROL)
# Adding sheds changes the compound itself: the property side decides.
SHED_ADMIN_ROLES = (ROLE_ADMIN, ROLE_SITE_MANAGER)


def staff_required(*roles: str) -> Callable:
    """Decorator: signed-in staff with one of `roles`; others get the login page or 403."""

    def decorate(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        wrapped.staff_roles = roles  # read by the role/tenant matrix test
        return wrapped

    return decorate


def require_role(user: User, roles: tuple[str, ...]) -> None:
    """Abort 403 unless the user has one of `roles`."""
    if user.role not in roles:
        abort(403)


def shed_scope(user: User, query: Select) -> Select:
    """Limit a query that involves Shed to the sheds this staff user may see."""
    if user.role == ROLE_ADMIN:
        return query
    if user.role == ROLE_OPERATOR_STAFF:
        return query.where(Shed.operator_id == user.operator_id) if user.operator_id else query.where(false())
    if user.role in (ROLE_SITE_MANAGER, ROLE_PATROL):
        return query.where(Shed.site_id == user.site_id) if user.site_id else query.where(false())
    return query.where(false())


def site_scope(user: User, query: Select) -> Select:
    """Limit a query that involves Site to the sites this staff user may see."""
    if user.role == ROLE_ADMIN:
        return query
    if user.role == ROLE_OPERATOR_STAFF:
        operated = select(Shed.site_id).where(Shed.operator_id == user.operator_id)
        return query.where(Site.id.in_(operated)) if user.operator_id else query.where(false())
    if user.role in (ROLE_SITE_MANAGER, ROLE_PATROL):
        return query.where(Site.id == user.site_id) if user.site_id else query.where(false())
    return query.where(false())


def visible_sites(user: User) -> list[Site]:
    """Sites this staff user may see, by name."""
    return list(db.session.execute(site_scope(user, select(Site)).order_by(Site.id)).scalars())


def get_site_or_404(user: User, site_id: int) -> Site:
    """A site the user may see; any other is a 404."""
    site = db.session.execute(site_scope(user, select(Site).where(Site.id == site_id))).scalar_one_or_none()
    if site is None:
        abort(404)
    return site


def get_shed_or_404(user: User, shed_id: int) -> Shed:
    """A shed the user may see; any other is a 404."""
    shed = db.session.execute(shed_scope(user, select(Shed).where(Shed.id == shed_id))).scalar_one_or_none()
    if shed is None:
        abort(404)
    return shed


def get_port_or_404(user: User, port_id: int) -> Port:
    """A port in a shed the user may see; any other is a 404."""
    port = db.session.execute(
        shed_scope(user, select(Port).join(Shed, Shed.id == Port.shed_id).where(Port.id == port_id))
    ).scalar_one_or_none()
    if port is None:
        abort(404)
    return port


def get_alert_or_404(user: User, alert_id: int) -> Alert:
    """An alert on a port the user may see; any other is a 404."""
    alert = db.session.execute(
        shed_scope(user, select(Alert).join(Port, Port.id == Alert.port_id)
                   .join(Shed, Shed.id == Port.shed_id).where(Alert.id == alert_id))
    ).scalar_one_or_none()
    if alert is None:
        abort(404)
    return alert


def visible_shed_ids(user: User, site_id: int | None = None) -> Select:
    """A subquery of the ids of sheds the user may see (in one site, if given)."""
    query = select(Shed.id)
    if site_id is not None:
        query = query.where(Shed.site_id == site_id)
    return shed_scope(user, query)


def visible_port_ids(user: User, site_id: int | None = None) -> Select:
    """A subquery of the ids of ports in sheds the user may see (in one site, if given)."""
    return select(Port.id).where(Port.shed_id.in_(visible_shed_ids(user, site_id)))


def get_own_session_or_404(user, session_id: int) -> ChargeSession:
    """A charge session of this resident; anybody else's is a 404."""
    session = db.session.get(ChargeSession, session_id)
    if session is None or session.user_id != user.id:
        abort(404)
    return session


def get_own_topup_or_404(user, topup_id: int) -> TopUp:
    """A top-up of this resident; anybody else's is a 404."""
    topup = db.session.get(TopUp, topup_id)
    if topup is None or topup.user_id != user.id:
        abort(404)
    return topup
