"""A statement laid out as titled tables of typed cells; the CSV, XLSX and PDF writers render these."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from chargeshed.money.format import format_fen
from chargeshed.settlement.agreements import format_bp, price_per_kwh_text
from chargeshed.settlement.models import FEES_PARTY
from chargeshed.timeutil import to_local

ROLE_LABELS = {
    "operator": _l("Operator"),
    "property": _l("Property company"),
    "owners_committee": _l("Owners' committee"),
    "other": _l("Other"),
}
STATUS_LABELS = {"draft": _l("Draft"), "reviewed": _l("Reviewed, not issued"), "issued": _l("Issued")}
KIND_LABELS = {"session_refund": _l("Session refund")}


@dataclass(frozen=True)
class Fen:
    """An amount in fen."""

    value: int


@dataclass(frozen=True)
class Wh:
    """Energy in watt-hours (shown as kWh)."""

    value: int


@dataclass(frozen=True)
class Bp:
    """A share in basis points (shown as a percentage)."""

    value: int


@dataclass
class Table:
    """A titled table; numeric columns are summed in the total row when `total` is set."""

    key: str
    title: str
    header: list[str]
    rows: list[list] = field(default_factory=list)
    total: bool = False
    note: str = ""

    def total_row(self) -> list:
        """Sums of the numeric columns (first cell: the word Total)."""
        sums: list = [_("Total")]
        for column in range(1, len(self.header)):
            kinds = {type(row[column]) for row in self.rows}
            kind = kinds.pop() if len(kinds) == 1 else None
            if kind in (int, Fen, Wh):
                raw = sum(row[column] if kind is int else row[column].value for row in self.rows)
                sums.append(raw if kind is int else kind(raw))
            else:
                sums.append("")
        return sums


@dataclass
class Document:
    """Everything a statement shows, in order."""

    title: str
    status: str
    number: str | None
    meta: list[tuple[str, str]]
    tables: list[Table]
    rules: list[str]
    is_final: bool


def kwh_text(energy_wh: int) -> str:
    """Watt-hours as kWh with three decimals, exactly: 12345 -> '12.345'."""
    sign = "-" if energy_wh < 0 else ""
    whole, rest = divmod(abs(energy_wh), 1000)
    return f"{sign}{whole}.{rest:03d}"


def yuan_text(amount_fen: int) -> str:
    """Fen as a plain yuan number, exactly: 12345 -> '123.45' (no symbol, no separators)."""
    return format_fen(amount_fen, symbol="").replace(",", "")


def is_number(value) -> bool:
    """True for cells shown right-aligned: counts, amounts, energy, shares."""
    return isinstance(value, (Fen, Wh, Bp, int)) and not isinstance(value, bool)


def cell_text(value, money=format_fen) -> str:
    """A cell for people: ¥1,234.50 (or `money`'s form of the fen), 12.345 kWh, 45.50 %."""
    if isinstance(value, Fen):
        return money(value.value)
    if isinstance(value, Wh):
        return kwh_text(value.value)
    if isinstance(value, Bp):
        return format_bp(value.value)
    return "" if value is None else str(value)


def role_label(role: str) -> str:
    """A party role in words."""
    return str(ROLE_LABELS.get(role, role))


def _minor(amount: int, currency: str) -> str:
    """An amount in minor units of a two-decimal currency, e.g. 1087 hkd -> 'HKD 10.87'."""
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(int(amount)), 100)
    return f"{sign}{currency.upper()} {whole:,}.{cents:02d}"


def _converted_fee_rows(converted: dict) -> list[list]:
    """Fees Stripe took in the account's settlement currency, with how their CNY equivalent was derived."""
    return [
        [
            _(
                "Of which taken in %(currency)s: fees %(fee)s on %(settled)s settled for %(paid)s; "
                "CNY equivalent = each fee x CNY paid / amount settled (Stripe's rate on that payment)",
                currency=currency.upper(),
                fee=_minor(c["fee_minor"], currency),
                settled=_minor(c["gross_minor"], currency),
                paid=format_fen(c["paid_fen"]),
            ),
            Fen(c["cny_fen"]),
        ]
        for currency, c in sorted(converted.items())
        if c["transactions"]
    ] + [
        [
            _(
                "Refunds settled in %(currency)s: %(settled)s for %(refunded)s returned to payers, fees "
                "%(fee)s; CNY equivalent = each fee x CNY returned / amount settled (Stripe's rate on that refund)",
                currency=currency.upper(),
                settled=_minor(c["refunds"]["settled_minor"], currency),
                refunded=format_fen(c["refunds"]["refunded_fen"]),
                fee=_minor(c["refunds"]["fee_minor"], currency),
            ),
            Fen(c["refunds"]["cny_fen"]),
        ]
        for currency, c in sorted(converted.items())
        if c.get("refunds")
    ]


def fee_treatment(segment: dict) -> str:
    """How an agreement treats payment fees, in words."""
    if segment["fee_mode"] == FEES_PARTY:
        return _("Borne by %(party)s", party=segment["fee_bearer"])
    return _("Deducted before the split")


def electricity_terms(segment: dict) -> str:
    """An agreement's electricity pass-through, in words."""
    if not segment["electricity_fen_per_kwh"]:
        return _("None")
    return _(
        "%(price)s to %(party)s, before the split",
        price=price_per_kwh_text(segment["electricity_fen_per_kwh"]),
        party=segment["electricity_payer"],
    )


def scope_label(segment: dict) -> str:
    """What an agreement covers, in words."""
    return segment["scope"] or _("Whole site")


def rules() -> list[str]:
    """How the figures are made; printed on every statement."""
    return [
        _(
            "Every amount is in integer fen and comes from the ledger: gross revenue is the sum of the settle "
            "transactions on each shed's revenue account, booked on the day the session ended."
        ),
        _(
            "Refunds and corrections are listed one by one with their ledger reference. Anything booked "
            "after a statement was issued appears in the next statement; an issued statement never changes."
        ),
        _("Top-ups are not revenue: residents' wallet balances are money owed to them."),
        _(
            "Monthly pass revenue is recognised per day of validity: each day earns the price times the days "
            "so far divided by the pass's days, rounded down, less what the days before earned, so the days "
            "(and the months) of a pass add up exactly to its price. A refund gives back only the days not yet "
            "begun; the pass earns nothing after the refund day. A pass is valid at every shed of the site: "
            "each day's pass revenue is shared between the site's sheds in proportion to their ports in "
            "service (not retired), rounded by the largest-remainder method, and split between the parties "
            "like session revenue."
        ),
        _(
            "Electricity pass-through: the metered energy of the sessions times the agreed price, rounded to "
            "the nearest fen, is reimbursed to the party that pays the electricity bill before the split."
        ),
        _(
            "Payment fees booked in the period are allocated to each operator's site in proportion to its "
            "revenue (sessions and passes), then to the agreements in force in proportion to their revenue."
        ),
        _(
            "Shares are rounded by the largest-remainder method: each party gets its exact share rounded down, "
            "and the fen left over go one each to the largest remainders (ties: the party listed first). The "
            "shares add up exactly to the amount split, and none is more than one fen from its exact share."
        ),
    ]


def _revenue_table(key: str, title: str, first_heading: str, rows: list[tuple[object, dict]]) -> Table:
    """Sessions, energy and revenue per shed or per day: the same columns after the first."""
    return Table(
        key,
        title,
        [
            first_heading,
            _("Sessions"),
            _("Energy (kWh)"),
            _("Gross revenue"),
            _("Monthly pass revenue"),
            _("Refunds and corrections"),
            _("Net revenue"),
        ],
        total=True,
        rows=[
            [
                label,
                r["sessions"],
                Wh(r["energy_wh"]),
                Fen(r["gross_fen"]),
                Fen(r.get("pass_fen", 0)),
                Fen(r["adjustments_fen"]),
                Fen(r["net_fen"]),
            ]
            for label, r in rows
        ],
    )


def build(figures: dict, status: str, number: str | None, issued_at: datetime | None = None) -> Document:
    """Lay out the figures of a statement (issued, reviewed or draft)."""
    totals = figures["totals"]
    period = figures["period"]
    meta = [
        (_("Statement No."), number or _("– (not issued)")),
        (_("Status"), str(STATUS_LABELS.get(status, status))),
        (_("Operator"), figures["operator"]["name"]),
        (_("Site"), figures["site"]["name"]),
        (_("Address"), figures["site"]["address"]),
        (_("Period"), f"{period['start']} – {period['end']}"),
        (_("Figures as of"), _local_text(figures["computed_at"])),
    ]
    if issued_at is not None:
        meta.append((_("Issued"), to_local(issued_at).strftime("%Y-%m-%d %H:%M")))
    tables = [
        Table(
            "summary",
            _("Summary"),
            [_("Item"), _("Amount")],
            rows=[
                [_("Sessions"), totals["sessions"]],
                [_("Energy (kWh)"), Wh(totals["energy_wh"])],
                [_("Gross revenue"), Fen(totals["gross_fen"])],
                [_("Monthly pass revenue"), Fen(totals.get("pass_fen", 0))],
                [_("Refunds and corrections"), Fen(totals["adjustments_fen"])],
                [_("Net revenue"), Fen(totals["net_fen"])],
                [_("Electricity pass-through"), Fen(totals["electricity_fen"])],
                [_("Payment fees (allocated)"), Fen(totals["fees_fen"])],
                [_("Split between the parties"), Fen(totals["distributable_fen"])],
                [_("Due to the parties"), Fen(totals["payout_fen"])],
            ],
        ),
        Table(
            "parties",
            _("Due to each party"),
            [_("Party"), _("Role"), _("Amount due")],
            total=True,
            rows=[[p["name"], role_label(p["role"]), Fen(p["payout_fen"])] for p in figures["parties"]],
        ),
    ]
    for index, segment in enumerate(figures["segments"], start=1):
        tables.append(
            Table(
                f"split_{index}",
                _(
                    "Agreement #%(id)s: %(scope)s, %(start)s – %(end)s",
                    id=segment["agreement_id"],
                    scope=scope_label(segment),
                    start=segment["from"],
                    end=segment["to"],
                ),
                [
                    _("Party"),
                    _("Role"),
                    _("Share"),
                    _("Share of the split"),
                    _("Electricity"),
                    _("Payment fees"),
                    _("Amount due"),
                ],
                rows=[
                    [
                        p["name"],
                        role_label(p["role"]),
                        Bp(p["share_bp"]),
                        Fen(p["share_fen"]),
                        Fen(p["electricity_fen"]),
                        Fen(-p["fees_fen"]),
                        Fen(p["payout_fen"]),
                    ]
                    for p in segment["parties"]
                ],
                total=True,
                note=_segment_note(segment),
            )
        )
    tables += [
        _revenue_table("by_shed", _("By shed"), _("Shed"), [(s["name"], s) for s in figures["sheds"]]),
        _revenue_table("by_day", _("By day"), _("Day"), [(d["date"], d) for d in figures["days"]]),
        Table(
            "adjustments",
            _("Refunds and corrections"),
            [_("Booked"), _("Shed"), _("Kind"), _("Session"), _("Amount")],
            total=True,
            rows=[
                [
                    _local_text(a["booked_at"]),
                    a["shed"],
                    str(KIND_LABELS.get(a["kind"], a["kind"])),
                    _session_text(a),
                    Fen(a["amount_fen"]),
                ]
                for a in figures["adjustments"]
            ],
            note=_("None in this period.") if not figures["adjustments"] else "",
        ),
        Table(
            "fees",
            _("Payment fees"),
            [_("Item"), _("Amount")],
            rows=[
                [_("Fees on all top-ups booked in the period"), Fen(figures["fees"]["period_total_fen"])],
                [_("Fee transactions"), figures["fees"]["transactions"]],
                [_("Revenue of this site (sessions and passes)"), Fen(figures["fees"]["site_gross_fen"])],
                [_("Revenue of all sites (sessions and passes)"), Fen(figures["fees"]["all_gross_fen"])],
                [_("Allocated to this site"), Fen(figures["fees"]["allocated_fen"])],
                *_converted_fee_rows(figures["fees"].get("converted") or {}),
            ],
        ),
        Table(
            "residents",
            _("Residents' money (not revenue)"),
            [_("Item"), _("Amount")],
            rows=[
                [
                    _("Wallet balances at the end of the period (owed to residents)"),
                    Fen(figures["residents"]["wallets_fen"]),
                ],
                [_("Held for charges still running at the end of the period"), Fen(figures["residents"]["holds_fen"])],
                [_("Cash-outs on their way back to residents"), Fen(figures["residents"]["cashouts_fen"])],
                [
                    _("Monthly passes paid for days after the period (unused days are refundable)"),
                    Fen(figures["residents"].get("passes_unearned_fen", 0)),
                ],
                [_("Top-ups received in the period"), Fen(figures["residents"]["topups_fen"])],
            ],
            note=_("All sites: wallets are not tied to one site."),
        ),
    ]
    title = _("Settlement statement") if status == "issued" else _("Settlement statement (draft)")
    return Document(
        title=title, status=status, number=number, meta=meta, tables=tables, rules=rules(), is_final=status == "issued"
    )


def _segment_note(segment: dict) -> str:
    """One agreement's figures in a sentence, under its table."""
    return _(
        "Sheds: %(sheds)s. Sessions %(sessions)s, energy %(kwh)s kWh, gross %(gross)s, monthly passes "
        "%(passes)s, refunds and corrections %(adjustments)s, net %(net)s; electricity %(electricity)s; "
        "payment fees %(fees)s (%(treatment)s); split %(split)s.",
        sheds=", ".join(segment["sheds"]) or "–",
        sessions=segment["sessions"],
        kwh=kwh_text(segment["energy_wh"]),
        gross=format_fen(segment["gross_fen"]),
        passes=format_fen(segment.get("pass_fen", 0)),
        adjustments=format_fen(segment["adjustments_fen"]),
        net=format_fen(segment["net_fen"]),
        electricity=f"{format_fen(segment['electricity_fen'])} ({electricity_terms(segment)})",
        fees=format_fen(segment["fees_fen"]),
        treatment=fee_treatment(segment),
        split=format_fen(segment["distributable_fen"]),
    )


def _local_text(iso: str) -> str:
    return to_local(datetime.fromisoformat(iso)).strftime("%Y-%m-%d %H:%M")


def _session_text(line: dict) -> str:
    if line.get("session_id") is None:
        return ""
    text = f"#{line['session_id']} ({line['session_date']})"
    if line.get("statement_number"):
        text += " " + _("in %(number)s", number=line["statement_number"])
    return text
