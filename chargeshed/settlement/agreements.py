"""Agreement services: create (with every rule checked), delete unused, find the one in force."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from chargeshed.extensions import db
from chargeshed.money.format import format_fen
from chargeshed.settlement.models import (
    FEE_MODES,
    FEES_PARTY,
    FULL_SHARE_BP,
    ISSUED,
    PARTY_ROLES,
    Agreement,
    AgreementParty,
    Statement,
)
from chargeshed.settlement.periods import FIRST_YEAR, LAST_YEAR, SettlementRefused
from chargeshed.sites.models import Shed

MAX_PARTIES = 8
# Cents of a yuan per kWh above this are a typing mistake (¥100 per kWh).
MAX_ELECTRICITY_FEN_PER_KWH = 10_000


@dataclass(frozen=True)
class PartyInput:
    """One party as entered: name, role, share in basis points, and its duties."""

    name: str
    role: str
    share_bp: int
    pays_electricity: bool = False
    bears_fees: bool = False


def format_bp(share_bp: int) -> str:
    """Basis points as a percentage with two decimals: 4550 -> '45.50 %'."""
    whole, rest = divmod(share_bp, 100)
    return f"{whole}.{rest:02d} %"


def last_issued_end(operator_id: int, site_id: int) -> date | None:
    """The last day covered by an issued statement of this operator at this site, if any."""
    return db.session.execute(
        select(func.max(Statement.period_end)).where(
            Statement.operator_id == operator_id, Statement.site_id == site_id, Statement.status == ISSUED
        )
    ).scalar_one_or_none()


def agreements_of(operator_id: int, site_id: int) -> list[Agreement]:
    """Every agreement of this operator at this site, oldest start first, with parties loaded."""
    return list(
        db.session.execute(
            select(Agreement)
            .options(selectinload(Agreement.parties), selectinload(Agreement.shed))
            .where(Agreement.operator_id == operator_id, Agreement.site_id == site_id)
            .order_by(Agreement.valid_from, Agreement.id)
        ).scalars()
    )


def effective_ranges(agreements: list[Agreement]) -> dict[int, tuple[date, date | None]]:
    """Days each agreement is in force: from its start until its end, or the day before the next
    agreement of the same scope starts (an open-ended agreement runs until replaced)."""
    ranges: dict[int, tuple[date, date | None]] = {}
    by_scope: dict[int | None, list[Agreement]] = {}
    for agreement in agreements:
        by_scope.setdefault(agreement.shed_id, []).append(agreement)
    for scoped in by_scope.values():
        scoped.sort(key=lambda a: (a.valid_from, a.id))
        for current, following in zip(scoped, scoped[1:] + [None], strict=True):
            end = current.valid_to
            if following is not None:
                cut = following.valid_from - timedelta(days=1)
                end = cut if end is None or end > cut else end
            ranges[current.id] = (current.valid_from, end)
    return ranges


def _covers(span: tuple[date, date | None], day: date) -> bool:
    start, end = span
    return start <= day and (end is None or day <= end)


class AgreementBook:
    """The agreements of one operator at one site, answering 'which terms apply here on this day'."""

    def __init__(self, agreements: list[Agreement]):
        self.agreements = agreements
        self.ranges = effective_ranges(agreements)

    def covers(self, agreement: Agreement, day: date) -> bool:
        """True when `agreement` is in force on `day`."""
        return _covers(self.ranges[agreement.id], day)

    def in_force(self, shed_id: int, day: date) -> Agreement | None:
        """The shed's own agreement on `day`, else the site-wide one, else None."""
        site_wide = None
        for agreement in self.agreements:
            if not _covers(self.ranges[agreement.id], day):
                continue
            if agreement.shed_id == shed_id:
                return agreement
            if agreement.shed_id is None:
                site_wide = agreement
        return site_wide


def _check_parties(parties: list[PartyInput], electricity_fen_per_kwh: int, fee_mode: str) -> None:
    if not parties:
        raise SettlementRefused(_l("Name at least one party."))
    if len(parties) > MAX_PARTIES:
        raise SettlementRefused(_l("An agreement has at most %(n)d parties.", n=MAX_PARTIES))
    names = [p.name.strip() for p in parties]
    if any(not name for name in names):
        raise SettlementRefused(_l("Every party needs a name."))
    if len(set(names)) != len(names):
        raise SettlementRefused(_l("Each party can appear only once."))
    if any(p.role not in PARTY_ROLES for p in parties):
        raise SettlementRefused(_l("Choose a role for every party."))
    if any(not 0 <= p.share_bp <= FULL_SHARE_BP for p in parties):
        raise SettlementRefused(_l("Each share must be between 0 % and 100 %."))
    total = sum(p.share_bp for p in parties)
    if total != FULL_SHARE_BP:
        raise SettlementRefused(
            _l(
                "The shares add up to %(total)s; they must add up to exactly 100.00 %% (10,000 basis points).",
                total=format_bp(total),
            )
        )
    if sum(p.pays_electricity for p in parties) > 1:
        raise SettlementRefused(_l("Only one party can pay the electricity bill."))
    if electricity_fen_per_kwh and not any(p.pays_electricity for p in parties):
        raise SettlementRefused(_l("Say which party pays the electricity bill, or set the price to 0."))
    if fee_mode not in FEE_MODES:
        raise SettlementRefused(_l("Choose how payment fees are treated."))
    bearers = sum(p.bears_fees for p in parties)
    if fee_mode == FEES_PARTY and bearers != 1:
        raise SettlementRefused(_l("Choose exactly one party to bear the payment fees."))


def _overlapping(candidate_from: date, candidate_to: date | None, other: Agreement) -> bool:
    """Two agreements of one scope overlap when they start on the same day, or when one's
    explicit end reaches into the other (an open end only runs until the next start)."""
    if other.valid_from == candidate_from:
        return True
    if other.valid_from < candidate_from:
        return other.valid_to is not None and other.valid_to >= candidate_from
    return candidate_to is not None and candidate_to >= other.valid_from


def create_agreement(
    *,
    operator_id: int,
    site_id: int,
    shed_id: int | None,
    valid_from: date,
    valid_to: date | None,
    electricity_fen_per_kwh: int,
    fee_mode: str,
    parties: list[PartyInput],
    note: str = "",
    created_by_id: int | None = None,
) -> Agreement:
    """Add a new agreement to the session, or raise SettlementRefused saying why not (nothing is added then).

    Flushes (the agreement gets its id); the caller commits.
    """
    if any(not FIRST_YEAR <= day.year <= LAST_YEAR for day in (valid_from, valid_to) if day is not None):
        raise SettlementRefused(
            _l("Choose days between the years %(first)d and %(last)d.", first=FIRST_YEAR, last=LAST_YEAR)
        )
    if valid_to is not None and valid_to < valid_from:
        raise SettlementRefused(_l("The agreement ends before it starts."))
    if not 0 <= electricity_fen_per_kwh <= MAX_ELECTRICITY_FEN_PER_KWH:
        raise SettlementRefused(_l("Enter an electricity price between ¥0.00 and ¥100.00 per kWh."))
    _check_parties(parties, electricity_fen_per_kwh, fee_mode)
    if shed_id is not None:
        shed = db.session.get(Shed, shed_id)
        if shed is None or shed.site_id != site_id or shed.operator_id != operator_id:
            raise SettlementRefused(_l("That shed is not run by this operator at this site."))
    issued_until = last_issued_end(operator_id, site_id)
    if issued_until is not None and valid_from <= issued_until:
        raise SettlementRefused(
            _l(
                "Statements up to %(day)s are issued, so their terms cannot change: the agreement can start "
                "on %(next)s at the earliest.",
                day=issued_until.isoformat(),
                next=(issued_until + timedelta(days=1)).isoformat(),
            )
        )
    for other in agreements_of(operator_id, site_id):
        if other.shed_id == shed_id and _overlapping(valid_from, valid_to, other):
            raise SettlementRefused(
                _l(
                    "This overlaps agreement #%(id)d (%(start)s – %(end)s) for the same sheds. Agreements "
                    "of the same scope may not overlap; an agreement without an end runs until the next starts.",
                    id=other.id,
                    start=other.valid_from.isoformat(),
                    end=other.valid_to.isoformat() if other.valid_to else "…",
                )
            )
    agreement = Agreement(
        operator_id=operator_id,
        site_id=site_id,
        shed_id=shed_id,
        valid_from=valid_from,
        valid_to=valid_to,
        electricity_fen_per_kwh=electricity_fen_per_kwh,
        fee_mode=fee_mode,
        note=note.strip()[:255],
        created_by_id=created_by_id,
        parties=[
            AgreementParty(
                position=i,
                name=p.name.strip()[:120],
                role=p.role,
                share_bp=p.share_bp,
                pays_electricity=p.pays_electricity,
                bears_fees=p.bears_fees and fee_mode == FEES_PARTY,
            )
            for i, p in enumerate(parties, start=1)
        ],
    )
    db.session.add(agreement)
    db.session.flush()
    return agreement


def delete_agreement(agreement: Agreement) -> None:
    """Delete an agreement whose terms no issued statement used; refuse otherwise. Flushes; the caller commits."""
    issued_until = last_issued_end(agreement.operator_id, agreement.site_id)
    if issued_until is not None and agreement.valid_from <= issued_until:
        raise SettlementRefused(_l("This agreement governs periods that are already issued; it is kept."))
    db.session.delete(agreement)
    db.session.flush()


def describe_terms(agreement: Agreement) -> dict:
    """The agreement's terms as plain data, for statements (kept in an issued statement for good)."""
    payer = agreement.electricity_payer
    bearer = agreement.fee_bearer
    return {
        "agreement_id": agreement.id,
        "scope": agreement.shed.name if agreement.shed is not None else None,
        "valid_from": agreement.valid_from.isoformat(),
        "valid_to": agreement.valid_to.isoformat() if agreement.valid_to else None,
        "electricity_fen_per_kwh": agreement.electricity_fen_per_kwh,
        "electricity_payer": payer.name if payer and agreement.electricity_fen_per_kwh else None,
        "fee_mode": agreement.fee_mode,
        "fee_bearer": bearer.name if bearer and agreement.fee_mode == FEES_PARTY else None,
        "note": agreement.note,
    }


def price_per_kwh_text(fen_per_kwh: int) -> str:
    """A price per kWh for people: ¥0.62/kWh."""
    return f"{format_fen(fen_per_kwh)}/kWh"
