"""Access to safety records: the case, incident, photo or building the staff user may see, or 404."""

from __future__ import annotations

from sqlalchemy import select

from chargeshed.accounts.access import shed_scope, site_scope
from chargeshed.accounts.models import ROLE_ADMIN, ROLE_PATROL, ROLE_SITE_MANAGER, User
from chargeshed.errors import NotFound
from chargeshed.extensions import db
from chargeshed.safety.models import CasePhoto, HazardCase, Incident
from chargeshed.sites.models import Building, Shed, Site

# Who may read reporters' contacts and bike owners' details (the operator's staff may not).
PERSONAL_DATA_ROLES = (ROLE_ADMIN, ROLE_SITE_MANAGER, ROLE_PATROL)


def sees_personal_data(user: User) -> bool:
    """True when the user may see reporter contacts and bike owners."""
    return user.role in PERSONAL_DATA_ROLES


def case_scope(user: User, query):
    """Limit a query over HazardCase to the sites the user may see."""
    return site_scope(user, query.join(Site, Site.id == HazardCase.site_id))


def get_case_or_404(user: User, case_id: int) -> HazardCase:
    """A case in a site the user may see; any other is NotFound."""
    case = db.session.execute(case_scope(user, select(HazardCase).where(HazardCase.id == case_id))).scalar_one_or_none()
    if case is None:
        raise NotFound(f"case {case_id}")
    return case


def get_photo_or_404(user: User, photo_id: int) -> CasePhoto:
    """A photo of a case the user may see; any other is NotFound."""
    photo = db.session.get(CasePhoto, photo_id)
    if photo is None:
        raise NotFound(f"photo {photo_id}")
    get_case_or_404(user, photo.case_id)
    return photo


def incident_scope(user: User, query):
    """Limit a query over Incident to the sheds the user may see."""
    return shed_scope(user, query.join(Shed, Shed.id == Incident.shed_id))


def get_incident_or_404(user: User, incident_id: int) -> Incident:
    """An incident on a shed the user may see; any other is NotFound."""
    incident = db.session.execute(
        incident_scope(user, select(Incident).where(Incident.id == incident_id))
    ).scalar_one_or_none()
    if incident is None:
        raise NotFound(f"incident {incident_id}")
    return incident


def get_building_or_404(user: User, building_id: int) -> Building:
    """A building of a site the user may see; any other is NotFound."""
    building = db.session.execute(
        site_scope(user, select(Building).join(Site, Site.id == Building.site_id).where(Building.id == building_id))
    ).scalar_one_or_none()
    if building is None:
        raise NotFound(f"building {building_id}")
    return building
