"""What the pay page needs about a scanned port, read as one plain row.

The QR pay page is opened by every scan, often on a weak mobile link: it reads the port, its shed,
site and tariff, the port's live session and (signed in) the scanner's wallet balance in a single
statement, without building ORM objects. The same row carries the site's occupancy version (kept by
the supervisor tick), so the page can tell whether its list of free ports nearby is still current.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache

from sqlalchemy import Connection, Select, and_, bindparam, inspect, or_, select
from sqlalchemy.orm import aliased, make_transient_to_detached

from chargeshed.accounts.models import User
from chargeshed.charging.models import LIVE_STATES, ChargeSession, Tariff
from chargeshed.charging.occupancy import version_of
from chargeshed.charging.port_state import port_state_now
from chargeshed.charging.sessions import refusal_for_port
from chargeshed.charging.tariff import Tariff as TariffRules
from chargeshed.extensions import db
from chargeshed.money.ledger import wallet_code
from chargeshed.money.models import LedgerAccount
from chargeshed.sites.codes import normalise_code
from chargeshed.sites.models import OccupancyVersion, Port, Shed, Site


@dataclass(frozen=True, slots=True)
class ScannedPort:
    """The port's own fields the page and the start rules read (duck-types Port for them)."""

    id: int
    code: str
    number: int
    label: str
    status: str
    ocpp_state: str
    fault: str | None
    last_seen_at: datetime | None


@dataclass(frozen=True, slots=True)
class Named:
    """A site as the page shows it (the id for its free-port and pass pages)."""

    id: int
    name: str


@dataclass(frozen=True, slots=True)
class ShedSign:
    """The shed as the page shows it: its name and its site's name."""

    id: int
    name: str
    site: Named


@dataclass(frozen=True, slots=True)
class LiveRef:
    """The port's live session: which one, and whose."""

    id: int
    user_id: int


@dataclass(frozen=True, slots=True)
class SiteVersion:
    """The site's stored occupancy version row (charging.occupancy.version_of reads it)."""

    fingerprint: str
    offline_at: datetime | None
    charging: bool


@dataclass(frozen=True, slots=True)
class Scan:
    """Everything the pay page reads from the database."""

    port: ScannedPort
    shed: ShedSign
    terms: TariffRules
    live: LiveRef | None
    balance_fen: int | None  # None when nobody is signed in
    site_version: SiteVersion | None  # None until a supervisor tick has recorded the site


@cache
def _statement(with_wallet: bool) -> Select:
    """The pay page's statement, built once per process (building it costs more than running it)."""
    live = aliased(ChargeSession)
    columns = [
        Port.id,
        Port.code,
        Port.number,
        Port.label,
        Port.status,
        Port.ocpp_state,
        Port.fault,
        Port.last_seen_at,
        Shed.id.label("shed_id"),
        Shed.name.label("shed_name"),
        Site.id.label("site_id"),
        Site.name.label("site_name"),
        Tariff.rules,
        live.id.label("live_id"),
        live.user_id.label("live_user_id"),
        OccupancyVersion.fingerprint.label("site_fingerprint"),
        OccupancyVersion.offline_at.label("site_offline_at"),
        OccupancyVersion.charging.label("site_charging"),
    ]
    if with_wallet:
        columns.append(
            select(LedgerAccount.balance_fen)
            .where(LedgerAccount.code == bindparam("wallet"))
            .scalar_subquery()
            .label("balance_fen")
        )
    return (
        select(*columns)
        .join(Shed, Shed.id == Port.shed_id)
        .join(Site, Site.id == Shed.site_id)
        .join(Tariff, Tariff.id == Shed.tariff_id)
        # The live states spelled out (no expanding IN): the statement then needs no compiling per run.
        .outerjoin(live, and_(live.port_id == Port.id, or_(*(live.state == state for state in LIVE_STATES))))
        .outerjoin(OccupancyVersion, OccupancyVersion.site_id == Site.id)
        .where(Port.code == bindparam("code"))
    )


def load_scan(code: str, user_id: int | None = None, *, connection: Connection | None = None) -> Scan | None:
    """The port with this code and what the pay page shows about it, in one statement; None if unknown.

    With `user_id`, the resident's wallet balance comes in the same row (0 when never used). Runs on
    `connection` when given (e.g. an autocommit one: one statement needs no transaction around it),
    else on the session's.
    """
    parameters = {"code": normalise_code(code)}
    if user_id is not None:
        parameters["wallet"] = wallet_code(user_id)
    # Plain columns, no entities: skips the ORM's result machinery.
    connection = connection if connection is not None else db.session.connection()
    row = connection.execute(_statement(user_id is not None), parameters).first()
    return _scan_of(row, with_wallet=user_id is not None) if row is not None else None


@cache
def _user_columns() -> tuple[tuple[str, str], ...]:
    """Each mapped column of the user as (attribute, label): labelled apart from the page's own."""
    return tuple((attribute.key, f"user__{attribute.key}") for attribute in inspect(User).column_attrs)


@cache
def _statement_with_user() -> Select:
    """The pay page's statement with the wallet, and the user's columns beside it."""
    columns = {attribute.key: attribute.expression for attribute in inspect(User).column_attrs}
    return (
        _statement(True)
        .add_columns(*(columns[key].label(label) for key, label in _user_columns()))
        .outerjoin(User, User.id == bindparam("user_id"))
    )


def load_scan_with_user(code: str, user_id: int, connection: Connection) -> tuple[Scan | None, User | None]:
    """The page's row for the port with this code and the user with this id, in one statement on `connection`.

    A signed-in scan thus costs one round trip, as an anonymous one does, and no ORM session: the
    user is built from all its columns in the row, detached, as if a session had loaded it and
    closed. The page only reads it; a session it is added to later takes it as stored and unchanged.
    (None, None) when the port is unknown; the user is None when there is no user with this id.
    """
    parameters = {"code": normalise_code(code), "wallet": wallet_code(user_id), "user_id": user_id}
    row = connection.execute(_statement_with_user(), parameters).first()
    if row is None:
        return None, None
    return _scan_of(row, with_wallet=True), _user_of(row._mapping)


def _user_of(row) -> User | None:
    """The user whose columns the row holds, detached, as if its session had loaded and closed."""
    if row["user__id"] is None:
        return None
    user = User(**{key: row[label] for key, label in _user_columns()})
    make_transient_to_detached(user)  # loaded and unchanged: a session it joins never writes it
    return user


def _scan_of(row, with_wallet: bool) -> Scan:
    """The Scan a row of the pay page's statement holds (read by key: a row's named attributes cost more)."""
    get = row._mapping.__getitem__
    return Scan(
        port=ScannedPort(
            get("id"),
            get("code"),
            get("number"),
            get("label"),
            get("status"),
            get("ocpp_state"),
            get("fault"),
            get("last_seen_at"),
        ),
        shed=ShedSign(get("shed_id"), get("shed_name"), Named(get("site_id"), get("site_name"))),
        terms=TariffRules.from_dict(get("rules")),
        live=LiveRef(get("live_id"), get("live_user_id")) if get("live_id") is not None else None,
        balance_fen=(get("balance_fen") or 0) if with_wallet else None,
        site_version=SiteVersion(get("site_fingerprint"), get("site_offline_at"), bool(get("site_charging")))
        if get("site_fingerprint") is not None
        else None,
    )


@dataclass(frozen=True, slots=True)
class PageInputs:
    """What the pay page shows that depends on the time as well as on the scanned row.

    `free_ports_version` names the site's occupancy (kept by the tick) that the list of free ports
    nearby is drawn from; None when the page lists none, or when no tick has recorded the site yet.
    """

    state: str
    refusal: str | None
    free_ports_version: str | None


def page_inputs(found: Scan, now: datetime) -> PageInputs:
    """The port's state now, why it cannot start (if so) and which occupancy its free ports come from."""
    state = port_state_now(found.port, found.live, now)
    refusal = refusal_for_port(found.port, now, found.live)
    version = None
    if refusal and refusal != "port_retired" and found.site_version is not None:
        stored = found.site_version
        version = version_of(stored.fingerprint, stored.offline_at, stored.charging, now)
    return PageInputs(state, refusal, version)
