"""Words people see for hazard types, case states, steps and incidents (translated lazily)."""

from __future__ import annotations

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

HAZARD_LABELS = {
    "flying_wire": _l("Flying wire / charging in a corridor or stairwell"),
    "bike_indoors": _l("E-bike parked in a lobby or stairwell"),
    "battery_indoors": _l("Battery charged indoors"),
    "blocked_exit": _l("Blocked exit or escape route"),
    "other": _l("Other fire hazard"),
}

STATE_LABELS = {
    "reported": _l("Reported"),
    "verified": _l("Verified on site"),
    "notified": _l("Owner notified"),
    "deadline_set": _l("Deadline set"),
    "rectified": _l("Rectified"),
    "moved": _l("Bike moved"),
    "escalated": _l("Escalated"),
    "closed": _l("Closed"),
}

# What the reporter reads on the tracking link: no names, channels or notes.
PUBLIC_STATE_TEXT = {
    "reported": _l("Received. A patrol will check the place."),
    "verified": _l("Checked on site: the hazard is confirmed. The owner will be asked to remove it."),
    "notified": _l("The owner has been asked to remove the hazard."),
    "deadline_set": _l("The owner has a deadline to remove the hazard."),
    "rectified": _l("The hazard has been removed. The case will be closed after a final check."),
    "moved": _l("The bike has been moved to the charging shed or the designated area."),
    "escalated": _l("The case has been passed on to the authority responsible."),
    "closed": _l("Closed."),
}

OUTCOME_LABELS = {
    "no_hazard": _l("No hazard found on site"),
    "rectified": _l("Hazard removed"),
    "moved": _l("Bike moved"),
    "escalated": _l("Resolved by the authority"),
    "duplicate": _l("Same hazard as another case"),
}

ACTION_LABELS = {
    "report": _l("Reported"),
    "verify": _l("Verified on site"),
    "no_hazard": _l("No hazard found"),
    "notify": _l("Owner reminded"),
    "set_deadline": _l("Deadline set"),
    "rectify": _l("Rectified"),
    "move_bike": _l("Bike moved"),
    "escalate": _l("Escalated"),
    "close": _l("Closed"),
    "duplicate": _l("Closed as duplicate"),
    "note": _l("Note"),
    "link_bike": _l("Bike linked"),
}

# Button texts for the steps on a case page.
ACTION_BUTTONS = {
    "verify": _l("Hazard confirmed on site"),
    "no_hazard": _l("No hazard found"),
    "notify": _l("Log a reminder to the owner"),
    "set_deadline": _l("Set a deadline"),
    "rectify": _l("Rectified (with after photo)"),
    "move_bike": _l("Bike moved"),
    "escalate": _l("Escalate"),
    "close": _l("Close the case"),
    "duplicate": _l("Close as duplicate"),
}

# Steps shown on the tracking link (notes and bike links are staff-only).
PUBLIC_ACTIONS = {
    "report": _l("Report received"),
    "verify": _l("Checked on site: hazard confirmed"),
    "no_hazard": _l("Checked on site: no hazard found"),
    "notify": _l("Owner reminded"),
    "set_deadline": _l("Deadline set for the owner"),
    "rectify": _l("Hazard removed"),
    "move_bike": _l("Bike moved"),
    "escalate": _l("Passed on to an authority"),
    "close": _l("Case closed"),
    "duplicate": _l("Merged with an earlier report of the same hazard"),
}

CHANNEL_LABELS = {
    "wechat": _l("WeChat"),
    "phone": _l("Phone call"),
    "sms": _l("SMS"),
    "visit": _l("Visit at home"),
    "notice": _l("Notice posted (owner not reachable)"),
}

AUTHORITY_LABELS = {
    "residents_committee": _l("Residents' committee"),
    "sub_district": _l("Sub-district office"),
    "police_station": _l("Police station"),
    "fire_brigade": _l("Fire brigade"),
}

DESTINATION_LABELS = {
    "shed": _l("Charging shed"),
    "designated_area": _l("Designated parking area"),
}

INCIDENT_LABELS = {
    "overload": _l("Overload cut-off"),
    "overheat": _l("Overheat cut-off"),
    "stuck_relay": _l("Stuck relay (power on with no charge)"),
    "port_fault": _l("Port fault"),
}

SOURCE_LABELS = {
    "public": _l("Public report"),
    "patrol": _l("Patrol"),
}


def building_name(number: int) -> str:
    """A building by number, e.g. 4栋."""
    return _("Building %(n)s", n=number)


def location_label(building_number: int, unit: int | None, floor: int | None, spot: str = "") -> str:
    """A place in words, e.g. 4栋 2单元 6F · stairwell."""
    parts = [building_name(building_number)]
    if unit is not None:
        parts.append(_("Unit %(n)s", n=unit))
    if floor is not None:
        parts.append(_("%(n)sF", n=floor) if floor > 0 else _("B%(n)s", n=-floor))
    text = " ".join(parts)
    return f"{text} · {spot}" if spot else text


def case_location(case, with_spot: bool = True) -> str:
    """The place of a case in words."""
    return location_label(case.building.number, case.unit, case.floor, case.spot if with_spot else "")
