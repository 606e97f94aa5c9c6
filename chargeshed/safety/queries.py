"""What the safety pages list: the case list with its filters, buildings to choose, incidents, counts.

Every staff query is limited to what the user may see (safety/access.py); the views stay thin.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from chargeshed.accounts.models import User
from chargeshed.extensions import db
from chargeshed.safety.access import case_scope, incident_scope
from chargeshed.safety.models import (
    CLOSED,
    DEADLINE_SET,
    HAZARD_TYPES,
    INCIDENT_OPEN,
    PHOTO_REPORT,
    REPORTED,
    CasePhoto,
    HazardCase,
    Incident,
)
from chargeshed.sites.models import Building, Site

# The case list's filters: what `show=` may be.
LIST_FILTERS = ("open", "overdue", "awaiting", "closed", "all")
CLOSED_INCIDENTS_SHOWN = 30


@dataclass(frozen=True)
class CaseFilter:
    """The case list's filters, as chosen on the page."""

    shown: str = "open"
    building_number: int | None = None
    hazard: str = ""

    @classmethod
    def parse(cls, shown: str | None, building_number: int | None, hazard: str | None) -> CaseFilter:
        """Unknown values fall back to the defaults (open cases, every building and hazard)."""
        return cls(
            shown=shown if shown in LIST_FILTERS else "open",
            building_number=building_number or None,
            hazard=hazard if hazard in HAZARD_TYPES else "",
        )


def only_site_id() -> int | None:
    """The id of the platform's one compound, or None when there are none or several."""
    ids = db.session.execute(select(Site.id).limit(2)).scalars().all()
    return ids[0] if len(ids) == 1 else None


def building_choices(site_ids: set[int] | None = None) -> list[tuple[Building, str]]:
    """(building, compound name) for the report form, by compound then building number."""
    query = select(Building, Site.name).join(Site, Site.id == Building.site_id).order_by(Site.id, Building.number)
    if site_ids is not None:
        query = query.where(Site.id.in_(site_ids))
    return [(building, name) for building, name in db.session.execute(query).all()]


def case_page(
    user: User, filters: CaseFilter, now: datetime, response_hours: int, page: int, per_page: int
) -> tuple[list[HazardCase], bool]:
    """One page of the cases the user may see under `filters`, and whether more follow."""
    query = case_scope(user, select(HazardCase)).options(
        selectinload(HazardCase.building), selectinload(HazardCase.photos)
    )
    if filters.shown == "open":
        query = query.where(HazardCase.state != CLOSED).order_by(HazardCase.created_at)
    elif filters.shown == "overdue":
        query = query.where(HazardCase.state == DEADLINE_SET, HazardCase.deadline_at < now).order_by(
            HazardCase.deadline_at
        )
    elif filters.shown == "awaiting":
        query = query.where(
            HazardCase.state == REPORTED, HazardCase.created_at < now - timedelta(hours=response_hours)
        ).order_by(HazardCase.created_at)
    elif filters.shown == "closed":
        query = query.where(HazardCase.state == CLOSED).order_by(HazardCase.closed_at.desc())
    else:
        query = query.order_by(HazardCase.created_at.desc())
    if filters.building_number:
        query = query.join(Building, Building.id == HazardCase.building_id).where(
            Building.number == filters.building_number
        )
    if filters.hazard:
        query = query.where(HazardCase.hazard_type == filters.hazard)
    rows = list(db.session.execute(query.offset((page - 1) * per_page).limit(per_page + 1)).scalars())
    return rows[:per_page], len(rows) > per_page


def case_building_numbers(user: User) -> list[int]:
    """Numbers of the buildings with a case the user may see (the list's building filter)."""
    query = case_scope(
        user,
        select(Building.number).select_from(HazardCase).join(Building, Building.id == HazardCase.building_id),
    )
    return sorted(set(db.session.execute(query).scalars()))


def visible_case(user: User, case_id: int) -> HazardCase | None:
    """The case if the user may see it, else None (for optional references such as "duplicate of")."""
    return db.session.execute(case_scope(user, select(HazardCase).where(HazardCase.id == case_id))).scalar_one_or_none()


def report_photos(case: HazardCase) -> list[CasePhoto]:
    """The photos the reporter sent with this case (never staff photos)."""
    return [p for p in case.photos if p.kind == PHOTO_REPORT]


def report_photo(case: HazardCase, photo_id: int) -> CasePhoto | None:
    """A photo the reporter sent with this case (never staff photos), else None."""
    photo = db.session.get(CasePhoto, photo_id)
    if photo is None or photo.case_id != case.id or photo.kind != PHOTO_REPORT:
        return None
    return photo


def incident_lists(user: User) -> tuple[list[Incident], list[Incident]]:
    """(open incidents, oldest first; the latest closed ones) on the sheds the user may see."""
    base = incident_scope(user, select(Incident)).options(selectinload(Incident.occurrences_log))
    open_rows = list(
        db.session.execute(base.where(Incident.state == INCIDENT_OPEN).order_by(Incident.opened_at)).scalars()
    )
    closed_rows = list(
        db.session.execute(
            base.where(Incident.state != INCIDENT_OPEN)
            .order_by(Incident.closed_at.desc())
            .limit(CLOSED_INCIDENTS_SHOWN)
        ).scalars()
    )
    return open_rows, closed_rows


def open_incident_count(user: User) -> int:
    """How many incidents are open on the sheds the user may see."""
    return db.session.execute(
        incident_scope(user, select(func.count(Incident.id))).where(Incident.state == INCIDENT_OPEN)
    ).scalar_one()
