"""Pure money arithmetic of a revenue split, in integer fen: no database, no floats."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chargeshed.settlement.models import FEES_PARTY, FEES_SHARED, FULL_SHARE_BP


def largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """Split `total` fen in proportion to non-negative integer `weights`.

    Every part first gets the floor of its exact share; the fen left over go one each to
    the parts with the largest remainders (ties: the earlier part). The parts sum exactly
    to `total` and none is more than one fen from its exact share. A negative total is
    split like its absolute value, with the sign put back. All-zero weights count as equal.
    """
    if not weights:
        raise ValueError("nothing to split between")
    if any(w < 0 for w in weights):
        raise ValueError("weights must not be negative")
    weights = list(weights) if sum(weights) else [1] * len(weights)
    whole = sum(weights)
    sign, amount = (-1, -total) if total < 0 else (1, total)
    parts = [amount * w // whole for w in weights]
    remainders = [amount * w % whole for w in weights]
    left = amount - sum(parts)
    for i in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:left]:
        parts[i] += 1
    return [sign * part for part in parts]


def electricity_fen(energy_wh: int, fen_per_kwh: int) -> int:
    """Electricity cost of `energy_wh` at `fen_per_kwh`, rounded to the nearest fen (half up)."""
    return (energy_wh * fen_per_kwh * 2 + 1000) // 2000


@dataclass(frozen=True)
class PartyTerms:
    """A party of an agreement as the split needs it."""

    name: str
    role: str
    share_bp: int
    pays_electricity: bool = False
    bears_fees: bool = False


@dataclass(frozen=True)
class Payout:
    """What one party receives: its share, plus electricity reimbursed, minus fees it bears."""

    name: str
    role: str
    share_bp: int
    share_fen: int
    electricity_fen: int
    fees_fen: int

    @property
    def payout_fen(self) -> int:
        """The amount due to this party (negative: the party owes it)."""
        return self.share_fen + self.electricity_fen - self.fees_fen


@dataclass(frozen=True)
class Split:
    """The split of one agreement's net revenue."""

    net_fen: int
    electricity_fen: int
    fees_fen: int
    distributable_fen: int
    payouts: tuple[Payout, ...]

    @property
    def payout_fen(self) -> int:
        """Total due to the parties: net revenue less payment fees."""
        return sum(p.payout_fen for p in self.payouts)


def split_revenue(
    net_fen: int,
    energy_wh: int,
    fees_fen: int,
    parties: Sequence[PartyTerms],
    fen_per_kwh: int = 0,
    fee_mode: str = FEES_SHARED,
) -> Split:
    """Split net revenue between parties.

    The electricity payer is reimbursed first (metered energy at the agreed price). Payment
    fees are deducted before the split (`shared`) or from the fee bearer's part (`party`).
    What remains is divided by the parties' basis points with `largest_remainder`.
    """
    if sum(p.share_bp for p in parties) != FULL_SHARE_BP:
        raise ValueError("shares must sum to 10,000 basis points")
    if fee_mode not in (FEES_SHARED, FEES_PARTY):
        raise ValueError(f"unknown fee treatment {fee_mode!r}")
    electricity = electricity_fen(energy_wh, fen_per_kwh) if fen_per_kwh else 0
    payer = next((i for i, p in enumerate(parties) if p.pays_electricity), None)
    if electricity and payer is None:
        raise ValueError("electricity is passed through but no party pays it")
    bearer = next((i for i, p in enumerate(parties) if p.bears_fees), None)
    if fee_mode == FEES_PARTY and bearer is None:
        raise ValueError("fees are borne by one party but none is named")
    distributable = net_fen - electricity - (fees_fen if fee_mode == FEES_SHARED else 0)
    shares = largest_remainder(distributable, [p.share_bp for p in parties])
    payouts = tuple(
        Payout(
            p.name,
            p.role,
            p.share_bp,
            share,
            electricity if i == payer else 0,
            fees_fen if fee_mode == FEES_PARTY and i == bearer else 0,
        )
        for i, (p, share) in enumerate(zip(parties, shares, strict=True))
    )
    return Split(net_fen, electricity, fees_fen, distributable, payouts)
