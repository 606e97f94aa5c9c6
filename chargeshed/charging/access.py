"""Access to charging records: a resident's own session, a staff user's port alert; else NotFound."""

from __future__ import annotations

from sqlalchemy import select

from chargeshed.accounts.access import shed_scope
from chargeshed.accounts.models import User
from chargeshed.charging.models import ChargeSession
from chargeshed.errors import NotFound
from chargeshed.extensions import db
from chargeshed.ports.models import Alert
from chargeshed.sites.models import Port, Shed


def get_own_session_or_404(user: User, session_id: int) -> ChargeSession:
    """A charge session of this resident; anybody else's is NotFound."""
    session = db.session.get(ChargeSession, session_id)
    if session is None or session.user_id != user.id:
        raise NotFound(f"session {session_id}")
    return session


def get_alert_or_404(user: User, alert_id: int) -> Alert:
    """An alert on a port in a shed the staff user may see; any other is NotFound."""
    alert = db.session.execute(
        shed_scope(
            user,
            select(Alert)
            .join(Port, Port.id == Alert.port_id)
            .join(Shed, Shed.id == Port.shed_id)
            .where(Alert.id == alert_id),
        )
    ).scalar_one_or_none()
    if alert is None:
        raise NotFound(f"alert {alert_id}")
    return alert
