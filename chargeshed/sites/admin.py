"""Shed administration: add sheds and ports, rename and move sheds.

Every change is all or none: it does everything, or raises Refused and leaves the session as it was
(its inserts run in a savepoint). Changes are flushed; the caller commits.
What staff do to a port in service (rename, maintenance, retire, stop) is charging/port_admin.py.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError

from chargeshed.extensions import db
from chargeshed.sites.codes import new_port_code
from chargeshed.sites.models import Operator, Port, Shed, Site

MAX_PORT_NUMBER = 999
MAX_PORTS_PER_REQUEST = 200
_RANGE = re.compile(r"^(\d{1,4})(?:-(\d{1,4}))?$")


def _tariff_model():
    """The Tariff model, reached through Shed.tariff (sites sits below charging and does not import it)."""
    return sa_inspect(Shed).relationships["tariff"].mapper.class_


class Refused(Exception):
    """An admin change that cannot be made; `code` says why, `numbers` lists the ports concerned."""

    def __init__(self, code: str, numbers: list[int] | None = None):
        super().__init__(code)
        self.code = code
        self.numbers = numbers or []


def parse_port_numbers(text: str) -> list[int]:
    """'1-12, 15, 20-22' → [1, …, 12, 15, 20, 21, 22]. Raises Refused on bad or repeated input."""
    numbers: list[int] = []
    compact = re.sub(r"\s*[-–~]\s*", "-", (text or "").strip())
    parts = [part for part in re.split(r"[,，;、\s]+", compact) if part]
    if not parts:
        raise Refused("numbers_missing")
    for part in parts:
        match = _RANGE.match(part)
        if not match:
            raise Refused("numbers_format")
        first = int(match.group(1))
        last = int(match.group(2) or first)
        if first > last:
            raise Refused("numbers_format")
        if first < 1 or last > MAX_PORT_NUMBER:
            raise Refused("numbers_range")
        if last - first + 1 + len(numbers) > MAX_PORTS_PER_REQUEST:
            raise Refused("numbers_too_many")
        numbers.extend(range(first, last + 1))
    repeated = sorted({n for n in numbers if numbers.count(n) > 1})
    if repeated:
        raise Refused("numbers_repeated", repeated)
    return sorted(numbers)


def _fresh_codes(count: int) -> list[str]:
    """`count` new port codes not used by any port yet."""
    codes: set[str] = set()
    while len(codes) < count:
        wanted = {new_port_code() for _ in range(count - len(codes))} - codes
        taken = set(db.session.execute(select(Port.code).where(Port.code.in_(wanted))).scalars())
        codes |= wanted - taken
    return sorted(codes)


def _insert_ports(shed: Shed, numbers: list[int], now: datetime) -> list[Port]:
    """Add ports to the session; Refused if a number is taken in this shed (nothing is added then)."""
    taken = sorted(
        db.session.execute(select(Port.number).where(Port.shed_id == shed.id, Port.number.in_(numbers))).scalars()
    )
    if taken:
        raise Refused("numbers_taken", taken)
    ports = [
        Port(shed_id=shed.id, number=number, code=code, label=f"{shed.name} {number}号", created_at=now)
        for number, code in zip(numbers, _fresh_codes(len(numbers)), strict=True)
    ]
    db.session.add_all(ports)
    return ports


def add_ports(shed: Shed, numbers: list[int], now: datetime) -> list[Port]:
    """Add ports with these numbers to a shed, all or none. Flushes; the caller commits."""
    try:
        with db.session.begin_nested():  # a refusal or a clash undoes only these ports
            ports = _insert_ports(shed, numbers, now)
    except IntegrityError:  # someone added the same number (or code) at the same moment
        raise Refused("conflict") from None
    return ports


def add_shed(
    site: Site,
    name: str,
    location: str,
    operator_id: int,
    tariff_id: int,
    port_numbers: list[int],
    now: datetime,
    *,
    any_operator: bool = False,
) -> Shed:
    """A new shed in a site, with its first ports, all or none. Flushes; the caller commits.

    The operator and tariff must be among shed_choices(site, any_operator=...).
    """
    name = name.strip()
    if not name:
        raise Refused("name_missing")
    if db.session.execute(select(func.count(Shed.id)).where(Shed.site_id == site.id, Shed.name == name)).scalar_one():
        raise Refused("name_taken")
    operators, tariffs = shed_choices(site, any_operator=any_operator)
    if operator_id not in {o[0] for o in operators} or tariff_id not in {t[0] for t in tariffs}:
        raise Refused("choice_invalid")
    shed = Shed(
        site_id=site.id,
        operator_id=operator_id,
        tariff_id=tariff_id,
        name=name,
        location=location.strip(),
        created_at=now,
    )
    try:
        with db.session.begin_nested():  # a refusal or a clash undoes only this shed and its ports
            db.session.add(shed)
            db.session.flush()
            _insert_ports(shed, port_numbers, now)
    except IntegrityError:
        raise Refused("conflict") from None
    return shed


def update_shed(shed: Shed, name: str, location: str) -> None:
    """Rename a shed or change where it is. Flushes; the caller commits."""
    name = name.strip()
    if not name:
        raise Refused("name_missing")
    if db.session.execute(
        select(func.count(Shed.id)).where(Shed.site_id == shed.site_id, Shed.name == name, Shed.id != shed.id)
    ).scalar_one():
        raise Refused("name_taken")
    shed.name = name
    shed.location = location.strip()
    db.session.flush()


def shed_choices(site: Site, *, any_operator: bool) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(operators, tariffs) a new shed of `site` can be given, by name.

    With `any_operator` (the platform admin) every operator and tariff; otherwise (a site manager)
    only the operators and tariffs already serving this site's sheds: bringing a new operator into
    a compound is the platform's decision, and other operators' price lists stay theirs.
    """
    tariff = _tariff_model()
    operators = select(Operator.id, Operator.name).order_by(Operator.name, Operator.id)
    tariffs = select(tariff.id, tariff.name).order_by(tariff.name, tariff.id)
    if not any_operator:
        operators = operators.where(Operator.id.in_(select(Shed.operator_id).where(Shed.site_id == site.id)))
        tariffs = tariffs.where(tariff.id.in_(select(Shed.tariff_id).where(Shed.site_id == site.id)))
    return (
        [tuple(o) for o in db.session.execute(operators).all()],
        [tuple(t) for t in db.session.execute(tariffs).all()],
    )
