"""Back office for the hardware: bind a port to its device, register OCPP charge points, see their links."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import IntegerField, StringField
from wtforms.validators import DataRequired, Length, NumberRange

from chargeshed.accounts import audit
from chargeshed.accounts.access import SHED_ADMIN_ROLES, get_port_or_404, visible_port_ids
from chargeshed.accounts.models import ROLE_ADMIN, ROLE_OPERATOR_STAFF, ROLE_SITE_MANAGER
from chargeshed.extensions import db
from chargeshed.ports import registry, targets, telemetry
from chargeshed.ports.models import Charger, DeviceLink, PortTelemetry
from chargeshed.ports.targets import TargetError
from chargeshed.sites.models import Port
from chargeshed.web.access import staff_required

bp = Blueprint("hardware", __name__, url_prefix="/manage")

CHARGER_ROLES = (ROLE_ADMIN, ROLE_OPERATOR_STAFF, ROLE_SITE_MANAGER)
CHARGER_ADD_ROLES = (ROLE_ADMIN, ROLE_OPERATOR_STAFF)


class TargetForm(FlaskForm):
    """The device a port is wired to."""

    target = StringField(
        _l("Hardware target"),
        validators=[DataRequired(_l("Enter the target, e.g. sim or ocpp:CP-0042/1.")), Length(max=120)],
        description=_l("sim, ocpp:<station id>/<connector>, shelly:<topic prefix>/<switch>, tasmota:<topic>[/<relay>]"),
    )


class ChargerForm(FlaskForm):
    """Register an OCPP charge point."""

    charge_point_id = StringField(
        _l("Charge point id"), validators=[DataRequired(_l("Enter the station's charge point id.")), Length(max=48)]
    )
    connectors = IntegerField(_l("Connectors"), default=1, validators=[NumberRange(1, 99, message=_l("From 1 to 99."))])


def port_hardware(port: Port) -> dict:
    """What the port page shows about the device: target, link, station state, last reading."""
    row = db.session.get(PortTelemetry, port.id)
    link = db.session.get(DeviceLink, row.device) if row is not None else None
    charger = (
        db.session.execute(
            select(Charger).where(Charger.charge_point_id == row.device.partition(":")[2])
        ).scalar_one_or_none()
        if row is not None and row.scheme == targets.OCPP
        else None
    )
    return {
        "target": port.hardware_target,
        "telemetry": row,
        "link": link,
        "charger": charger,
        "online": bool(row and row.link_online),
        "form": TargetForm(target=port.hardware_target),
        "may_bind": current_user.role in SHED_ADMIN_ROLES,
    }


@bp.post("/ports/<int:port_id>/hardware")
@staff_required(*SHED_ADMIN_ROLES)
def port_bind(port_id: int):
    """Wire the port to a hardware target (validated by the one target parser)."""
    port = get_port_or_404(current_user, port_id)
    form = TargetForm()
    if not form.validate_on_submit():
        abort(400)
    before = port.hardware_target
    try:
        telemetry.bind(port, form.target.data)
    except TargetError as exc:
        db.session.rollback()
        flash(_("Not a hardware target: %(reason)s", reason=str(exc)), "error")
        return redirect(url_for("manage.port_page", port_id=port_id) + "#hardware")
    audit.record(
        current_user.id,
        audit.PORT_BINDING,
        f"{port.shed.name} #{port.number} ({port.code})",
        site_id=port.shed.site_id,
        operator_id=port.shed.operator_id,
        reason=f"{before} → {port.hardware_target}",
    )
    db.session.commit()
    flash(_("Port %(n)s is now wired to %(target)s.", n=port.number, target=port.hardware_target), "ok")
    return redirect(url_for("manage.port_page", port_id=port_id) + "#hardware")


def _visible_chargers():
    """Chargers this user may see: all (admin), their operator's, or those wired to their ports."""
    rows = registry.charger_rows()
    if current_user.role == ROLE_ADMIN:
        return rows
    if current_user.role == ROLE_OPERATOR_STAFF:
        return [(c, link) for c, link in rows if c.operator_id == current_user.operator_id]
    devices = set(
        db.session.execute(
            select(PortTelemetry.device).where(PortTelemetry.port_id.in_(visible_port_ids(current_user)))
        ).scalars()
    )
    return [(c, link) for c, link in rows if c.device in devices]


def _chargers_page(form: ChargerForm, status: int = 200, new_key: str | None = None, added: str | None = None):
    chargers = _visible_chargers()
    devices = [c.device for c, _link in chargers]
    bound: dict[str, list[str]] = {}
    if devices:
        for device, code in db.session.execute(
            select(PortTelemetry.device, Port.code)
            .join(Port, Port.id == PortTelemetry.port_id)
            .where(PortTelemetry.device.in_(devices), Port.id.in_(visible_port_ids(current_user)))
            .order_by(Port.code)
        ):
            bound.setdefault(device, []).append(code)
    response = render_template(
        "manage/chargers.html",
        chargers=chargers,
        bound=bound,
        form=form,
        may_add=current_user.role in CHARGER_ADD_ROLES,
        new_key=new_key,
        added=added,
    )
    headers = {"Cache-Control": "no-store"} if new_key else {}
    return response, status, headers


@bp.get("/chargers")
@staff_required(*CHARGER_ROLES)
def chargers_page():
    """OCPP charge points with their link state and last heard, and the ports wired to them."""
    return _chargers_page(ChargerForm())


@bp.post("/chargers")
@staff_required(*CHARGER_ADD_ROLES)
def charger_add():
    """Register a charge point; its AuthorizationKey is shown on this one answer only."""
    form = ChargerForm()
    if not form.validate_on_submit():
        return _chargers_page(form, 400)
    operator_id = current_user.operator_id if current_user.role == ROLE_OPERATOR_STAFF else None
    try:
        added = registry.add_charger(form.charge_point_id.data.strip(), form.connectors.data, operator_id=operator_id)
    except registry.RegistryError as exc:
        db.session.rollback()
        form.charge_point_id.errors = [
            _("This charge point is registered already.")
            if exc.code == "exists"
            else _("Use 1 to 48 letters, digits and . _ : -")
        ]
        return _chargers_page(form, 400)
    cp_id = added.charger.charge_point_id
    db.session.commit()
    return _chargers_page(ChargerForm(formdata=None), 200, new_key=added.key, added=cp_id)
