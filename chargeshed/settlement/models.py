"""Revenue-split agreements (with their parties) and settlement statements."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from chargeshed.extensions import db
from chargeshed.timeutil import now as clock_now

FULL_SHARE_BP = 10_000

# Who the parties are; free names, but a role lets the statement group them.
ROLE_OPERATOR = "operator"
ROLE_PROPERTY = "property"
ROLE_OWNERS = "owners_committee"
ROLE_OTHER = "other"
PARTY_ROLES = (ROLE_OPERATOR, ROLE_PROPERTY, ROLE_OWNERS, ROLE_OTHER)

# How payment fees are treated: deducted before the split, or borne by one party.
FEES_SHARED = "shared"
FEES_PARTY = "party"
FEE_MODES = (FEES_SHARED, FEES_PARTY)

DRAFT = "draft"
REVIEWED = "reviewed"
ISSUED = "issued"


class Agreement(db.Model):
    """How one operator's revenue at a site (or at one shed) is split, from `valid_from` on.

    An agreement without `valid_to` runs until the next agreement of the same scope starts.
    """

    __table_args__ = (
        CheckConstraint("electricity_fen_per_kwh >= 0", name="electricity_price_not_negative"),
        CheckConstraint("valid_to IS NULL OR valid_to >= valid_from", name="valid_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operator.id"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    # None: every shed of the operator at the site that has no agreement of its own.
    shed_id: Mapped[int | None] = mapped_column(ForeignKey("shed.id"), index=True)
    valid_from: Mapped[date]
    valid_to: Mapped[date | None]
    # Electricity pass-through: the paying party is reimbursed first, per kWh metered.
    electricity_fen_per_kwh: Mapped[int] = mapped_column(default=0)
    fee_mode: Mapped[str] = mapped_column(String(12), default=FEES_SHARED)
    note: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=clock_now)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))

    parties: Mapped[list[AgreementParty]] = relationship(
        back_populates="agreement", order_by="AgreementParty.position", cascade="all, delete-orphan"
    )
    operator: Mapped[Operator] = relationship()  # noqa: F821
    site: Mapped[Site] = relationship()  # noqa: F821
    shed: Mapped[Shed | None] = relationship()  # noqa: F821

    @property
    def electricity_payer(self) -> AgreementParty | None:
        """The party reimbursed for electricity, if the agreement passes electricity through."""
        return next((p for p in self.parties if p.pays_electricity), None)

    @property
    def fee_bearer(self) -> AgreementParty | None:
        """The party that bears the payment fees when fees are not shared."""
        return next((p for p in self.parties if p.bears_fees), None)


class AgreementParty(db.Model):
    """One party of an agreement and its share in basis points (1/100 of a percent)."""

    __table_args__ = (
        UniqueConstraint("agreement_id", "position"),
        CheckConstraint("share_bp >= 0 AND share_bp <= 10000", name="share_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    agreement_id: Mapped[int] = mapped_column(ForeignKey("agreement.id"), index=True)
    position: Mapped[int]
    name: Mapped[str] = mapped_column(String(120))
    role: Mapped[str] = mapped_column(String(20), default=ROLE_OTHER)
    share_bp: Mapped[int]
    pays_electricity: Mapped[bool] = mapped_column(default=False)
    bears_fees: Mapped[bool] = mapped_column(default=False)

    agreement: Mapped[Agreement] = relationship(back_populates="parties")


class Statement(db.Model):
    """A settlement statement of one operator at one site for a closed date range.

    Drafts are computed live. Reviewing stores a snapshot of the figures; issuing locks
    that snapshot for good and gives the statement its number.
    """

    __table_args__ = (
        UniqueConstraint("operator_id", "site_id", "period_start", "period_end", name="uq_statement_period"),
        UniqueConstraint("operator_id", "site_id", "sequence", name="uq_statement_sequence"),
        CheckConstraint("period_end >= period_start", name="period_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operator.id"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    period_start: Mapped[date]
    period_end: Mapped[date]
    status: Mapped[str] = mapped_column(String(12), default=DRAFT, index=True)
    # Issued statements only: their place in the operator-and-site series, and the number shown.
    sequence: Mapped[int | None]
    number: Mapped[str | None] = mapped_column(String(32), unique=True)
    # The figures as reviewed (and, once issued, for good): lines, totals, terms.
    figures: Mapped[dict | None] = mapped_column(JSON)
    # Net of refunds and corrections included as adjustment lines (fen), for lists.
    adjustments_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    payout_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=clock_now)
    reviewed_at: Mapped[datetime | None]
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    issued_at: Mapped[datetime | None]
    issued_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))

    operator: Mapped[Operator] = relationship()  # noqa: F821
    site: Mapped[Site] = relationship()  # noqa: F821
    reviewed_by: Mapped[User | None] = relationship(foreign_keys=[reviewed_by_id])  # noqa: F821
    issued_by: Mapped[User | None] = relationship(foreign_keys=[issued_by_id])  # noqa: F821

    @property
    def is_issued(self) -> bool:
        """True once issued: the figures never change again."""
        return self.status == ISSUED
