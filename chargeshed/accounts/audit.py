"""The staff action log: who stopped which charge, issued which statement, changed which port or user.

Services add a row in the same transaction as the change they describe (`record` only adds it to the
session); the log is read back scoped to what the reader may see.
"""

from __future__ import annotations

from sqlalchemy import Select, false, select

from chargeshed.accounts.models import ROLE_ADMIN, ROLE_OPERATOR_STAFF, ROLE_SITE_MANAGER, StaffAction, User
from chargeshed.extensions import db
from chargeshed.timeutil import now as clock_now

# The actions the log knows (the page names them; anything else is shown as its code).
STAFF_STOP = "staff_stop"
MAINTENANCE_ON = "maintenance_on"
MAINTENANCE_OFF = "maintenance_off"
PORT_RETIRED = "port_retired"
PORT_RENAMED = "port_renamed"
PORT_BINDING = "port_binding"
STATEMENT_REVIEWED = "statement_reviewed"
STATEMENT_ISSUED = "statement_issued"
STAFF_CREATED = "staff_created"
PASSWORD_RESET = "password_reset"
STAFF_DEACTIVATED = "staff_deactivated"
STAFF_REACTIVATED = "staff_reactivated"
LOG_PAGE = 100


def record(
    actor_id: int | None,
    action: str,
    target: str,
    *,
    site_id: int | None = None,
    operator_id: int | None = None,
    reason: str = "",
) -> StaffAction:
    """Add one log row to the caller's transaction (the caller commits it with the change itself)."""
    row = StaffAction(
        actor_id=actor_id,
        action=action,
        target=target[:120],
        site_id=site_id,
        operator_id=operator_id,
        reason=(reason or "").strip()[:255],
        at=clock_now(),
    )
    db.session.add(row)
    return row


def log_scope(user: User, query: Select) -> Select:
    """Limit a query over StaffAction to what the reader may see: an admin everything, a site manager
    their site's, operator staff their operator's; patrols see no log."""
    if user.role == ROLE_ADMIN:
        return query
    if user.role == ROLE_SITE_MANAGER and user.site_id:
        return query.where(StaffAction.site_id == user.site_id)
    if user.role == ROLE_OPERATOR_STAFF and user.operator_id:
        return query.where(StaffAction.operator_id == user.operator_id)
    return query.where(false())


def recent(user: User, action: str | None = None, page: int = 1) -> tuple[list[StaffAction], bool]:
    """One page of the log the reader may see, newest first, and whether more follow."""
    query = log_scope(user, select(StaffAction)).order_by(StaffAction.at.desc(), StaffAction.id.desc())
    if action:
        query = query.where(StaffAction.action == action)
    rows = list(db.session.execute(query.offset((page - 1) * LOG_PAGE).limit(LOG_PAGE + 1)).scalars())
    return rows[:LOG_PAGE], len(rows) > LOG_PAGE
