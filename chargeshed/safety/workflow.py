"""The hazard case workflow (2024 e-bike parking and charging guide): report, then each step.

reported → verified (or closed: no hazard) → owner notified (each reminder logged) → deadline set →
rectified (after photo) or, after ≥ 3 reminders, bike moved → escalated when needed → closed.
Every step writes a CaseEvent, in a savepoint of the caller's transaction (a refused or failed
step leaves it as it was); the caller commits. Nothing is ever deleted.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from flask_babel import gettext as _
from sqlalchemy import func, select, update

from chargeshed.accounts.models import Bike, User
from chargeshed.charging.models import ChargeSession
from chargeshed.extensions import db
from chargeshed.safety import uploads
from chargeshed.safety.labels import STATE_LABELS, location_label
from chargeshed.safety.models import (
    CASE_STATES,
    CLOSED,
    DEADLINE_SET,
    ESCALATED,
    HAZARD_TYPES,
    MOVED,
    NOTIFIED,
    OPEN_STATES,
    OUTCOME_DUPLICATE,
    OUTCOME_ESCALATED,
    OUTCOME_MOVED,
    OUTCOME_NO_HAZARD,
    OUTCOME_RECTIFIED,
    PHOTO_AFTER,
    PHOTO_REPORT,
    PHOTO_SITE,
    RECTIFIED,
    REPORTED,
    SOURCE_PUBLIC,
    VERIFIED,
    CaseEvent,
    CasePhoto,
    HazardCase,
)
from chargeshed.sites.models import Building, Shed
from chargeshed.timeutil import now as clock_now

# Reminder channels (the guide: WeChat, phone, SMS, a visit; a posted notice when unreachable).
CHANNELS = ("wechat", "phone", "sms", "visit", "notice")
# Bodies a case can be escalated to.
AUTHORITIES = ("residents_committee", "sub_district", "police_station", "fire_brigade")
# Where a bike can be moved to.
MOVE_DESTINATIONS = ("shed", "designated_area")
MIN_REMINDERS_BEFORE_MOVE = 3

# Actions: the states they may start from, and the state they lead to (None: stays).
REPORT = "report"
VERIFY = "verify"
NO_HAZARD = "no_hazard"
NOTIFY = "notify"
SET_DEADLINE = "set_deadline"
RECTIFY = "rectify"
MOVE_BIKE = "move_bike"
ESCALATE = "escalate"
CLOSE = "close"
DUPLICATE = "duplicate"
NOTE = "note"
LINK_BIKE = "link_bike"

RULES: dict[str, tuple[frozenset[str], str | None]] = {
    VERIFY: (frozenset({REPORTED}), VERIFIED),
    NO_HAZARD: (frozenset({REPORTED}), CLOSED),
    NOTIFY: (frozenset({VERIFIED, NOTIFIED, DEADLINE_SET, ESCALATED}), None),
    SET_DEADLINE: (frozenset({NOTIFIED, DEADLINE_SET, ESCALATED}), DEADLINE_SET),
    RECTIFY: (frozenset({VERIFIED, NOTIFIED, DEADLINE_SET, ESCALATED}), RECTIFIED),
    MOVE_BIKE: (frozenset({NOTIFIED, DEADLINE_SET, ESCALATED}), MOVED),
    ESCALATE: (frozenset({VERIFIED, NOTIFIED, DEADLINE_SET, ESCALATED}), ESCALATED),
    CLOSE: (frozenset({RECTIFIED, MOVED, ESCALATED}), CLOSED),
    DUPLICATE: (frozenset({REPORTED, VERIFIED}), CLOSED),
    NOTE: (frozenset(CASE_STATES), None),
    LINK_BIKE: (frozenset(OPEN_STATES), None),
}
# The order actions are offered in on a case page.
ACTION_ORDER = (VERIFY, NO_HAZARD, NOTIFY, SET_DEADLINE, RECTIFY, MOVE_BIKE, ESCALATE, CLOSE, DUPLICATE)


class WorkflowError(Exception):
    """A step that may not happen now; `message` is shown to the staff member."""

    def __init__(self, code: str, message: str):
        super().__init__(code)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class NewReport:
    """What a reporter (or a patrol) tells us about a hazard."""

    hazard_type: str
    building_id: int
    unit: int | None = None
    floor: int | None = None
    spot: str = ""
    description: str = ""
    contact: str = ""
    plate: str = ""


def new_tracking_token() -> str:
    """An unguessable token for the reporter's tracking link (192 random bits)."""
    return secrets.token_urlsafe(24)


def file_report(
    report: NewReport,
    photos: Sequence[uploads.CleanPhoto] = (),
    *,
    reporter_id: int | None = None,
    actor_id: int | None = None,
    source: str = SOURCE_PUBLIC,
    now: datetime | None = None,
) -> HazardCase:
    """Open a case from a report (public or patrol) with up to MAX_PHOTOS clean photos.

    Flushes; the caller commits. The photo files are removed again unless the caller's transaction
    commits (uploads.remove_unless_committed).
    """
    now = now or clock_now()
    if report.hazard_type not in HAZARD_TYPES:
        raise WorkflowError("hazard_type", _("Choose what kind of hazard it is."))
    building = db.session.get(Building, report.building_id)
    if building is None:
        raise WorkflowError("location", _("Choose the building."))
    if len(photos) > uploads.MAX_PHOTOS:
        raise WorkflowError("photos", _("Send at most %(n)s photos.", n=uploads.MAX_PHOTOS))
    case = HazardCase(
        site_id=building.site_id,
        building_id=building.id,
        unit=report.unit,
        floor=report.floor,
        spot=report.spot.strip(),
        hazard_type=report.hazard_type,
        description=report.description.strip(),
        source=source,
        reporter_contact=report.contact.strip(),
        reporter_id=reporter_id,
        reported_plate=report.plate,
        tracking_token=new_tracking_token(),
        state=REPORTED,
        created_at=now,
        updated_at=now,
    )
    with db.session.begin_nested():  # this report only: if it fails, the caller's transaction is as it was
        db.session.add(case)
        db.session.flush()
        event = CaseEvent(
            case_id=case.id,
            at=now,
            actor_id=actor_id or reporter_id,
            action=REPORT,
            from_state=None,
            to_state=REPORTED,
        )
        db.session.add(event)
        db.session.flush()
        _store_photos(case, event, photos, PHOTO_REPORT, now)
    return case


def _store_photos(
    case: HazardCase, event: CaseEvent, photos: Sequence[uploads.CleanPhoto], kind: str, now: datetime
) -> None:
    """Write the files and flush their rows, inside the caller's savepoint.

    Each file is tied to the transaction before it is written: if this or anything later fails (the
    savepoint or the caller's transaction rolled back, its commit failed), the files are removed.
    """
    session = db.session()
    for photo in photos:
        name = uploads.new_stored_name()
        uploads.remove_unless_committed(session, name)
        uploads.save_files(name, photo)
        db.session.add(
            CasePhoto(
                case_id=case.id,
                event_id=event.id,
                kind=kind,
                stored_name=name,
                width=photo.width,
                height=photo.height,
                size_bytes=len(photo.data),
                created_at=now,
            )
        )
    db.session.flush()


def allowed_actions(case: HazardCase) -> list[str]:
    """The workflow actions that may be taken on this case now, in display order."""
    actions = [a for a in ACTION_ORDER if case.state in RULES[a][0]]
    if MOVE_BIKE in actions and case.reminder_count < MIN_REMINDERS_BEFORE_MOVE:
        actions.remove(MOVE_BIKE)
    return actions


def act(
    case: HazardCase,
    action: str,
    actor_id: int,
    *,
    note: str = "",
    channel: str | None = None,
    target: str | None = None,
    deadline_at: datetime | None = None,
    photo: uploads.CleanPhoto | None = None,
    duplicate_of: HazardCase | None = None,
    first_charge_offered: bool = False,
    now: datetime | None = None,
) -> CaseEvent:
    """Take one workflow step on a case, or raise WorkflowError (nothing changes then).

    Flushes; the caller commits. The step is claimed by an UPDATE that matches only the state the
    case was read in: when someone else moved the case meanwhile it matches nothing, and the step is
    refused ("changed"). The step's writes are in a savepoint, so a refusal or failure undoes them
    and leaves the caller's transaction usable; `case` is then read again from the database.
    """
    now = now or clock_now()
    note = (note or "").strip()
    if action not in RULES or action == LINK_BIKE:
        raise WorkflowError("unknown", _("Unknown step."))
    sources, to_state = RULES[action]
    if case.state not in sources:
        raise WorkflowError(
            "state",
            _("This step is not possible while the case is “%(state)s”.", state=state_name(case.state)),
        )
    values: dict = {"updated_at": now}
    event = CaseEvent(case_id=case.id, at=now, actor_id=actor_id, action=action, from_state=case.state, note=note)
    if action == NO_HAZARD:
        _need(note, "note", _("Say what you found on site."))
        values.update(outcome=OUTCOME_NO_HAZARD, verified_at=now)
    elif action == VERIFY:
        values["verified_at"] = now
    elif action == NOTIFY:
        if channel not in CHANNELS:
            raise WorkflowError("channel", _("Choose how the owner was reminded."))
        event.channel = channel
        event.first_charge_offered = bool(first_charge_offered)
        values["reminder_count"] = HazardCase.reminder_count + 1
        to_state = NOTIFIED if case.state == VERIFIED else case.state
    elif action == SET_DEADLINE:
        if deadline_at is None or deadline_at <= now:
            raise WorkflowError("deadline", _("Choose a deadline in the future."))
        event.deadline_at = deadline_at
        values["deadline_at"] = deadline_at
    elif action == RECTIFY:
        if photo is None:
            raise WorkflowError("photo", _("Add an “after” photo that shows the hazard is gone."))
        values["outcome"] = OUTCOME_RECTIFIED
    elif action == MOVE_BIKE:
        if case.reminder_count < MIN_REMINDERS_BEFORE_MOVE:
            raise WorkflowError(
                "reminders",
                _(
                    "A bike may be moved only after %(n)s reminders (so far: %(count)s).",
                    n=MIN_REMINDERS_BEFORE_MOVE,
                    count=case.reminder_count,
                ),
            )
        if target not in MOVE_DESTINATIONS:
            raise WorkflowError("target", _("Choose where the bike was moved to."))
        event.target = target
        values["outcome"] = OUTCOME_MOVED
    elif action == ESCALATE:
        if target not in AUTHORITIES:
            raise WorkflowError("target", _("Choose who the case was passed to."))
        event.target = target
        values["escalated_to"] = target
    elif action == CLOSE:
        if case.state == ESCALATED:
            _need(note, "note", _("Say how the authority resolved it."))
            values["outcome"] = OUTCOME_ESCALATED
    elif action == DUPLICATE:
        if (
            duplicate_of is None
            or duplicate_of.id == case.id
            or duplicate_of.site_id != case.site_id
            or not duplicate_of.is_open
        ):
            raise WorkflowError("duplicate", _("Choose another open case of this compound."))
        values.update(outcome=OUTCOME_DUPLICATE, duplicate_of_id=duplicate_of.id)
        event.target = str(duplicate_of.id)
    elif action == NOTE:
        _need(note, "note", _("Write the note."))
    to_state = to_state or case.state
    if to_state == CLOSED:
        values["closed_at"] = now
    values["state"] = to_state
    event.to_state = to_state
    with db.session.begin_nested():  # a refusal or failure undoes this step only, and expires `case`
        claimed = db.session.execute(
            update(HazardCase).where(HazardCase.id == case.id, HazardCase.state == case.state).values(**values)
        ).rowcount
        if not claimed:
            raise WorkflowError("changed", _("Someone else changed this case meanwhile. Please look again."))
        db.session.add(event)
        db.session.flush()
        if case.reporter_id and to_state != event.from_state:  # the reporter hears of progress, if they opted in
            from chargeshed.notify.base import HAZARD_PROGRESS
            from chargeshed.notify.outbox import queue_for_user

            queue_for_user(
                case.reporter_id,
                HAZARD_PROGRESS,
                {"case": f"#{case.id}", "status": state_name(to_state)},
                f"hazard:{case.id}:{event.id}",
                now,
            )
        kind = PHOTO_AFTER if action == RECTIFY else PHOTO_SITE
        _store_photos(case, event, [photo] if photo is not None else [], kind, now)
    db.session.refresh(case)
    return event


def _need(value: str, code: str, message: str) -> None:
    if not value:
        raise WorkflowError(code, message)


def find_bike(plate: str, site_id: int) -> Bike | None:
    """The bike with this (normalised) plate registered by a resident of `site_id`.

    Bikes of other compounds are not found: staff of one compound never see another's residents,
    and an "unknown plate" answer says nothing about other compounds.
    """
    if not plate:
        return None
    return db.session.execute(
        select(Bike).join(User, User.id == Bike.owner_id).where(Bike.plate == plate, User.site_id == site_id)
    ).scalar_one_or_none()


def link_bike(case: HazardCase, plate: str, actor_id: int, now: datetime | None = None) -> Bike:
    """Link a case to a registered bike by plate (logged); raises WorkflowError if unknown.

    Flushes; the caller commits.
    """
    now = now or clock_now()
    if not case.is_open:
        raise WorkflowError("state", _("This case is closed."))
    bike = find_bike(plate, case.site_id)
    if bike is None:
        raise WorkflowError("plate", _("No registered bike has the plate %(plate)s.", plate=plate))
    case.bike_id = bike.id
    case.updated_at = now
    db.session.add(
        CaseEvent(
            case_id=case.id,
            at=now,
            actor_id=actor_id,
            action=LINK_BIKE,
            from_state=case.state,
            to_state=case.state,
            target=bike.plate[:24],
        )
    )
    db.session.flush()
    return bike


def find_by_token(token: str) -> HazardCase | None:
    """The case behind a tracking link, or None."""
    if not token or len(token) > 64:
        return None
    return db.session.execute(select(HazardCase).where(HazardCase.tracking_token == token)).scalar_one_or_none()


def similar_open_cases(
    building_id: int | None,
    unit: int | None = None,
    floor: int | None = None,
    exclude_id: int | None = None,
    limit: int = 5,
) -> list[HazardCase]:
    """Open cases at the same place: same building, and the same unit and floor where both are known."""
    if not building_id:
        return []
    query = select(HazardCase).where(HazardCase.building_id == building_id, HazardCase.state != CLOSED)
    if unit is not None:
        query = query.where((HazardCase.unit == unit) | HazardCase.unit.is_(None))
    if floor is not None:
        query = query.where((HazardCase.floor == floor) | HazardCase.floor.is_(None))
    if exclude_id is not None:
        query = query.where(HazardCase.id != exclude_id)
    return list(db.session.execute(query.order_by(HazardCase.created_at).limit(limit)).scalars())


@dataclass(frozen=True)
class SimilarHint:
    """What the public report form may say of an open case at the place a reporter named: the place
    in the reporter's own words (never the case's spot or any detail the reporter did not give), its
    state and the day it was reported."""

    place: str
    state: str
    reported_at: datetime


def public_similar_hints(site_id: int, building_id: int, unit: int | None, floor: int | None) -> list[SimilarHint]:
    """Open cases at the very place a reporter named in this compound, told as the public duplicate hint.

    Only a building of `site_id` answers (another compound's building gives nothing), and only once
    the floor is given: the case must be on that floor, and in that unit when both name one. The
    place shown is what the reporter typed (the unit only when the case has the same one), so the
    hint locates nothing a neighbour standing there would not see.
    """
    if floor is None:
        return []
    building = db.session.get(Building, building_id)
    if building is None or building.site_id != site_id:
        return []
    query = select(HazardCase).where(
        HazardCase.building_id == building.id, HazardCase.state != CLOSED, HazardCase.floor == floor
    )
    if unit is not None:
        query = query.where((HazardCase.unit == unit) | HazardCase.unit.is_(None))
    cases = db.session.execute(query.order_by(HazardCase.created_at).limit(3)).scalars()
    return [
        SimilarHint(
            place=location_label(building.number, unit if unit is not None and case.unit == unit else None, floor),
            state=case.state,
            reported_at=case.created_at,
        )
        for case in cases
    ]


@dataclass(frozen=True)
class OwnerRecord:
    """What the registry says about a linked bike's owner: other cases and use of the sheds."""

    bike: Bike
    cases_for_bike: list[HazardCase]
    cases_for_owner: int
    shed_charges: int
    last_charge_at: datetime | None

    @property
    def repeat(self) -> bool:
        """True when the owner has more than this one case."""
        return self.cases_for_owner > 1

    @property
    def never_charged(self) -> bool:
        """True when the owner has never completed a charge in a shed (a first charge is worth offering)."""
        return self.shed_charges == 0


def owner_record(case: HazardCase) -> OwnerRecord | None:
    """Repeat-offender view of the linked bike and its owner, or None when no bike is linked.

    Only what the case's compound knows: its cases and charges in its sheds; nothing when the bike's
    owner is not a resident of the case's compound.
    """
    bike = case.bike
    if bike is None or bike.owner.site_id != case.site_id:
        return None
    owner_bikes = select(Bike.id).where(Bike.owner_id == bike.owner_id)
    for_bike = list(
        db.session.execute(
            select(HazardCase)
            .where(HazardCase.bike_id == bike.id, HazardCase.site_id == case.site_id)
            .order_by(HazardCase.created_at)
        ).scalars()
    )
    for_owner = db.session.execute(
        select(func.count())
        .select_from(HazardCase)
        .where(HazardCase.bike_id.in_(owner_bikes), HazardCase.site_id == case.site_id)
    ).scalar_one()
    charges, last = db.session.execute(
        select(func.count(ChargeSession.id), func.max(ChargeSession.ended_at)).where(
            ChargeSession.user_id == bike.owner_id,
            ChargeSession.state == "ended",
            ChargeSession.shed_id.in_(select(Shed.id).where(Shed.site_id == case.site_id)),
        )
    ).one()
    return OwnerRecord(bike, for_bike, for_owner, charges, last)


def repeat_counts(bike_ids: Sequence[int]) -> dict[int, int]:
    """Number of cases per owner (in the owner's own compound), keyed by bike id, for a list page's
    repeat-offender badges."""
    ids = [b for b in set(bike_ids) if b]
    if not ids:
        return {}
    owner_of = dict(db.session.execute(select(Bike.id, Bike.owner_id).where(Bike.id.in_(ids))).all())
    counts = dict(
        db.session.execute(
            select(Bike.owner_id, func.count(HazardCase.id))
            .join(HazardCase, HazardCase.bike_id == Bike.id)
            .join(User, User.id == Bike.owner_id)
            .where(Bike.owner_id.in_(set(owner_of.values())), HazardCase.site_id == User.site_id)
            .group_by(Bike.owner_id)
        ).all()
    )
    return {bike_id: counts.get(owner, 0) for bike_id, owner in owner_of.items()}


def state_name(state: str) -> str:
    """The translated name of a case state."""
    return str(STATE_LABELS.get(state, state))
