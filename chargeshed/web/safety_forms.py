"""Forms of the safety area (the public hazard report, case steps, incident close) and their helpers
shared by the public report pages (safety_report.py) and the staff pages (safety.py)."""

from __future__ import annotations

from flask import abort, current_app, request, send_file, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    MultipleFileField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, NumberRange, Optional, ValidationError

from chargeshed.safety import queries, uploads, workflow
from chargeshed.safety.labels import (
    AUTHORITY_LABELS,
    CHANNEL_LABELS,
    DESTINATION_LABELS,
    HAZARD_LABELS,
    building_name,
)
from chargeshed.safety.models import CasePhoto
from chargeshed.web.bounds import DateField, IntegerField, bounded_int
from chargeshed.web.forms import PLATE_RE, normalise_plate


def choices(labels: dict) -> list[SelectChoice]:
    """Select or radio options from a {value: label} dict."""
    return [SelectChoice(value, label) for value, label in labels.items()]


def _optional_int(value):
    """'' and None become None; digits become an int; anything else (a number too large for the
    database included) stays a string, refused later."""
    if value in (None, ""):
        return None
    number = bounded_int(value)
    return value if number is None else number


class ReportForm(FlaskForm):
    """A hazard report from anyone; the building list is set by the view."""

    hazard_type = RadioField(
        _l("What did you see?"),
        choices=choices(HAZARD_LABELS),
        validators=[DataRequired(_l("Choose what kind of hazard it is."))],
    )
    building = SelectField(_l("Building (栋)"), coerce=_optional_int, validate_choice=False)
    unit = IntegerField(
        _l("Unit (单元)"),
        validators=[Optional(), NumberRange(min=1, max=20, message=_l("Enter a unit number from 1 to 20."))],
    )
    floor = IntegerField(
        _l("Floor"),
        validators=[Optional(), NumberRange(min=-3, max=60, message=_l("Enter a floor from -3 (basement) to 60."))],
    )
    spot = StringField(_l("Spot (e.g. stairwell, lift lobby, by the window)"), validators=[Length(max=120)])
    description = TextAreaField(_l("What is there? (optional)"), validators=[Length(max=1000)])
    plate = StringField(_l("Plate of the bike, if you saw it (optional)"), filters=[normalise_plate])
    photos = MultipleFileField(_l("Photos (up to 3)"))
    contact = StringField(_l("Your phone or WeChat, if we may contact you (optional)"), validators=[Length(max=60)])

    def __init__(self, *args, building_ids: set[int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.building_ids = building_ids or set()

    def validate_building(self, field):
        if field.data in (None, ""):
            raise ValidationError(_l("Choose the building."))
        if field.data not in self.building_ids:
            raise ValidationError(_l("Choose a building from the list."))

    def validate_floor(self, field):
        if field.data == 0:
            raise ValidationError(_l("Floors start at 1; basements are -1, -2, -3."))

    def validate_spot(self, field):
        if self.floor.data is None and not (field.data or "").strip():
            raise ValidationError(_l("Tell us where: the floor or the spot."))

    def validate_description(self, field):
        if self.hazard_type.data == "other" and not (field.data or "").strip():
            raise ValidationError(_l("Describe the hazard."))

    def validate_plate(self, field):
        if field.data and not PLATE_RE.match(field.data):
            raise ValidationError(_l("Use 4 to 12 letters, digits or Chinese characters."))


class StepForm(FlaskForm):
    """Any step of a case; which fields matter depends on the step (the service checks them)."""

    note = TextAreaField(_l("Note"), validators=[Length(max=2000)])
    channel = RadioField(_l("How was the owner reminded?"), choices=choices(CHANNEL_LABELS), validate_choice=False)
    first_charge_offered = BooleanField(_l("Offered a first charge in the shed"))
    deadline = DateField(_l("Deadline (last day)"), validators=[Optional()])
    authority = SelectField(_l("Passed to"), choices=choices(AUTHORITY_LABELS), validate_choice=False)
    destination = SelectField(_l("Moved to"), choices=choices(DESTINATION_LABELS), validate_choice=False)
    duplicate_of = IntegerField(_l("Same hazard as case number"), validators=[Optional()])
    photo = FileField(_l("Photo"))


class LinkBikeForm(FlaskForm):
    """Link a case to a registered bike by plate."""

    plate = StringField(
        _l("Plate"), filters=[normalise_plate], validators=[DataRequired(_l("Enter the plate.")), Length(max=20)]
    )


class IncidentCloseForm(FlaskForm):
    """Close a port incident with what was done."""

    resolution = TextAreaField(
        _l("What was checked or repaired?"),
        validators=[DataRequired(_l("Say what was checked or repaired.")), Length(max=2000)],
    )


def public_url(endpoint: str, **values) -> str:
    """An absolute address on PUBLIC_BASE_URL (never the request's Host header)."""
    return current_app.config["PUBLIC_BASE_URL"].rstrip("/") + url_for(endpoint, **values)


def response_hours() -> int:
    """The reply time promised to reporters (SAFETY_RESPONSE_HOURS)."""
    return int(current_app.config["SAFETY_RESPONSE_HOURS"])


def report_form(building_id: int | None = None, site_ids: set[int] | None = None, *, blank: bool = False) -> ReportForm:
    """The report form with its building choices (the compound's name shown when there are several)."""
    rows = queries.building_choices(site_ids)
    several = len({b.site_id for b, _name in rows}) > 1
    options = [SelectChoice("", _("Choose the building"))] + [
        SelectChoice(b.id, f"{name} · {building_name(b.number)}" if several else building_name(b.number))
        for b, name in rows
    ]
    ids = {b.id for b, _name in rows}
    form = ReportForm(formdata=None, building_ids=ids) if blank else ReportForm(building_ids=ids)
    form.building.choices = options
    if request.method == "GET" and building_id in ids:
        form.building.data = building_id
    return form


def clean_uploads(field, max_photos: int = uploads.MAX_PHOTOS) -> list[uploads.CleanPhoto] | None:
    """Decode and re-encode the chosen files; None (with messages on the field) when one is refused."""
    files = [f for f in (request.files.getlist(field.name) if field.name in request.files else []) if f.filename]
    if len(files) > max_photos:
        field.errors = list(field.errors) + [_("Choose at most %(n)s photos.", n=max_photos)]
        return None
    photos, refused = [], []
    for upload in files:
        try:
            photos.append(uploads.clean_photo(uploads.read_upload(upload.stream)))
        except uploads.PhotoRejected as rejected:
            refused.append(f"{upload.filename[:60]}: {rejected}")
    if refused:
        field.errors = list(field.errors) + refused + [_("Please choose the photos again.")]
        return None
    return photos


def ask_for_photos_again(field) -> None:
    """A form sent back with errors loses its chosen files: say so when some were chosen."""
    if any(f.filename for f in request.files.getlist(field.name)) and not field.errors:
        field.errors = [_("Please choose the photos again.")]


def new_report(form: ReportForm) -> workflow.NewReport:
    """The report the form describes, for workflow.file_report."""
    return workflow.NewReport(
        hazard_type=form.hazard_type.data,
        building_id=form.building.data,
        unit=form.unit.data,
        floor=form.floor.data,
        spot=form.spot.data or "",
        description=form.description.data or "",
        contact=form.contact.data or "",
        plate=form.plate.data or "",
    )


def send_photo(photo: CasePhoto, thumb: bool):
    """A stored case photo as a JPEG response (404 when its file is gone)."""
    try:
        response = send_file(
            uploads.photo_path(photo.stored_name, thumb), mimetype="image/jpeg", max_age=0, conditional=True
        )
    except (FileNotFoundError, ValueError):
        abort(404)
    # Case photos show people's homes and bikes: never kept by a browser or proxy.
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["Content-Disposition"] = f'inline; filename="case-{photo.case_id}-{photo.id}.jpg"'
    return response
