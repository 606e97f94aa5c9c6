"""Access helpers: the object the user may see, or a domain error (Forbidden: wrong role; NotFound: other tenant).

The web layer turns the errors into 403 and 404 (web/errors.py); the login decorator is web/access.py.
"""

from __future__ import annotations

from sqlalchemy import Select, false, select

from chargeshed.accounts.models import (
    ROLE_ADMIN,
    ROLE_OPERATOR_STAFF,
    ROLE_PATROL,
    ROLE_SITE_MANAGER,
    User,
)
from chargeshed.errors import Forbidden, NotFound
from chargeshed.extensions import db
from chargeshed.sites.models import Port, Shed, Site

# What each back-office area allows.
MANAGE_ROLES = (ROLE_ADMIN, ROLE_SITE_MANAGER, ROLE_OPERATOR_STAFF)
MONEY_ROLES = (ROLE_ADMIN, ROLE_OPERATOR_STAFF, ROLE_SITE_MANAGER)
SAFETY_ROLES = (ROLE_ADMIN, ROLE_SITE_MANAGER, ROLE_PATROL, ROLE_OPERATOR_STAFF)
SAFETY_WRITE_ROLES = (ROLE_ADMIN, ROLE_SITE_MANAGER, ROLE_PATROL)
# Adding sheds changes the compound itself: the property side decides.
SHED_ADMIN_ROLES = (ROLE_ADMIN, ROLE_SITE_MANAGER)
# A goodwill refund is paid out of a shed's revenue, which belongs to the shed's operator: only the
# platform admin and that operator's own staff spend it. Site managers see the refunds of their site.
REFUND_ROLES = (ROLE_ADMIN, ROLE_OPERATOR_STAFF)


def require_role(user: User, roles: tuple[str, ...]) -> None:
    """Raise Forbidden unless the user has one of `roles`."""
    if user.role not in roles:
        raise Forbidden(user.role)


def may_refund(user: User, shed: Shed) -> bool:
    """True when the user may give a goodwill refund out of this shed's revenue: an admin, or staff
    of the operator that owns the shed's revenue."""
    if user.role == ROLE_ADMIN:
        return True
    return user.role == ROLE_OPERATOR_STAFF and user.operator_id is not None and user.operator_id == shed.operator_id


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
    """A site the user may see; any other is NotFound."""
    site = db.session.execute(site_scope(user, select(Site).where(Site.id == site_id))).scalar_one_or_none()
    if site is None:
        raise NotFound(f"site {site_id}")
    return site


def get_shed_or_404(user: User, shed_id: int) -> Shed:
    """A shed the user may see; any other is NotFound."""
    shed = db.session.execute(shed_scope(user, select(Shed).where(Shed.id == shed_id))).scalar_one_or_none()
    if shed is None:
        raise NotFound(f"shed {shed_id}")
    return shed


def get_port_or_404(user: User, port_id: int) -> Port:
    """A port in a shed the user may see; any other is NotFound."""
    port = db.session.execute(
        shed_scope(user, select(Port).join(Shed, Shed.id == Port.shed_id).where(Port.id == port_id))
    ).scalar_one_or_none()
    if port is None:
        raise NotFound(f"port {port_id}")
    return port


def visible_shed_ids(user: User, site_id: int | None = None) -> Select:
    """A subquery of the ids of sheds the user may see (in one site, if given)."""
    query = select(Shed.id)
    if site_id is not None:
        query = query.where(Shed.site_id == site_id)
    return shed_scope(user, query)


def visible_port_ids(user: User, site_id: int | None = None) -> Select:
    """A subquery of the ids of ports in sheds the user may see (in one site, if given)."""
    return select(Port.id).where(Port.shed_id.in_(visible_shed_ids(user, site_id)))
