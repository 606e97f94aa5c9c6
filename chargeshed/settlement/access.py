"""Who may see which operator's money at which site (tenant checks on top of accounts.access)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from chargeshed.accounts.access import shed_scope
from chargeshed.accounts.models import ROLE_ADMIN, ROLE_OPERATOR_STAFF, User
from chargeshed.errors import NotFound
from chargeshed.extensions import db
from chargeshed.settlement.models import Agreement
from chargeshed.sites.models import Operator, Shed, Site

# Agreements and issuing bind the operator: its staff (and admins) do that. Reviewing is open to
# every money role, so the property company's site manager can check a statement before it is issued.
AGREEMENT_WRITE_ROLES = (ROLE_ADMIN, ROLE_OPERATOR_STAFF)
ISSUE_ROLES = (ROLE_ADMIN, ROLE_OPERATOR_STAFF)


@dataclass(frozen=True)
class OperatorSite:
    """One operator's sheds at one site: the unit agreements and statements are about."""

    operator: Operator
    site: Site


def operator_sites(user: User) -> list[OperatorSite]:
    """Every operator-and-site pair with a shed this user may see, by site then operator."""
    pairs = db.session.execute(shed_scope(user, select(Shed.operator_id, Shed.site_id).distinct())).all()
    if not pairs:
        return []
    operators = {
        o.id: o for o in db.session.execute(select(Operator).where(Operator.id.in_({p[0] for p in pairs}))).scalars()
    }
    sites = {s.id: s for s in db.session.execute(select(Site).where(Site.id.in_({p[1] for p in pairs}))).scalars()}
    return [OperatorSite(operators[o], sites[s]) for o, s in sorted(pairs, key=lambda p: (p[1], p[0]))]


def get_operator_site_or_404(user: User, operator_id: int, site_id: int) -> OperatorSite:
    """The pair if the operator runs a shed at the site that this user may see; otherwise NotFound."""
    query = select(Shed.id).where(Shed.operator_id == operator_id, Shed.site_id == site_id).limit(1)
    found = db.session.execute(shed_scope(user, query)).first()
    if found is None:
        raise NotFound(f"operator {operator_id} at site {site_id}")
    return OperatorSite(db.session.get(Operator, operator_id), db.session.get(Site, site_id))


def get_agreement_or_404(user: User, agreement_id: int) -> Agreement:
    """An agreement of a pair this user may see; any other is NotFound."""
    agreement = db.session.get(Agreement, agreement_id)
    if agreement is None:
        raise NotFound(f"agreement {agreement_id}")
    get_operator_site_or_404(user, agreement.operator_id, agreement.site_id)
    return agreement
