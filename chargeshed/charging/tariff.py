"""Pure pricing: power tiers, started units, the hold cap. No database, no Flask."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Tier:
    """Up to `max_watts` (inclusive) a unit costs `price_fen`."""

    max_watts: int
    price_fen: int


@dataclass(frozen=True)
class Tariff:
    """A price list and the rules that end a charge.

    The tier is chosen by measured power (the session's tier watts); every started
    unit of `unit_minutes` costs that tier's price; the cost never exceeds the hold.
    """

    tiers: tuple[Tier, ...]
    unit_minutes: int = 60
    max_minutes: int = 720
    hold_fen: int = 300
    full_threshold_w: int = 10
    full_minutes: int = 10
    overload_w: int = 1000
    unplug_w: int = 2
    unplug_grace_seconds: int = 60
    min_billable_wh: int = 5
    average_minutes: int = 5
    # Set on a monthly-pass charge: it costs nothing and may not go above this tier (0: a paid charge).
    pass_max_watts: int = 0

    def __post_init__(self):
        if not self.tiers:
            raise ValueError("a tariff needs at least one tier")
        bounds = [t.max_watts for t in self.tiers]
        if bounds != sorted(set(bounds)):
            raise ValueError("tier bounds must be strictly increasing")
        if any(t.price_fen <= 0 for t in self.tiers):
            raise ValueError("tier prices must be positive")
        if self.unit_minutes <= 0 or self.max_minutes <= 0 or self.hold_fen <= 0:
            raise ValueError("unit, maximum duration and hold must be positive")

    @classmethod
    def from_dict(cls, data: dict) -> Tariff:
        """Build from the JSON stored on a Tariff row or a session snapshot."""
        fields = dict(data)
        fields["tiers"] = tuple(Tier(int(a), int(b)) for a, b in fields["tiers"])
        return cls(**fields)

    def to_dict(self) -> dict:
        """JSON-ready form (tiers as [max_watts, price_fen] pairs)."""
        data = asdict(self)
        data["tiers"] = [[t.max_watts, t.price_fen] for t in self.tiers]
        return data

    def tier_for(self, watts: int) -> Tier:
        """The tier that prices `watts`; power above the last bound uses the last tier."""
        for tier in self.tiers:
            if watts <= tier.max_watts:
                return tier
        return self.tiers[-1]

    def tier_floor(self, tier: Tier) -> int:
        """The lower watt bound of a tier (0 for the first)."""
        index = self.tiers.index(tier)
        return self.tiers[index - 1].max_watts if index else 0

    def started_units(self, seconds: int) -> int:
        """Units begun in `seconds` of charging (a started unit counts whole)."""
        unit = self.unit_minutes * 60
        return max(0, -(-seconds // unit))

    def cost(self, seconds: int, tier_watts: int, energy_wh: int) -> int:
        """Exact cost in fen: started units times the tier price, capped at the hold.

        A charge that delivered less than `min_billable_wh` (unplugged, failed to
        start, faulted at once) costs nothing.
        """
        if energy_wh < self.min_billable_wh or seconds <= 0 or self.pass_max_watts:
            return 0
        units = max(1, self.started_units(seconds))
        return min(self.hold_fen, units * self.tier_for(tier_watts).price_fen)

    def paid_seconds(self, tier_watts: int) -> int:
        """How long the hold pays for at this tier (whole units only), within the maximum."""
        if self.pass_max_watts:  # a pass charge is limited by time, not by money
            return self.max_minutes * 60
        units = self.hold_fen // self.tier_for(tier_watts).price_fen
        return min(units * self.unit_minutes, self.max_minutes) * 60


def average_watts(energy_wh: int, seconds: float) -> int:
    """Average power from whole-Wh meter readings over `seconds`.

    Two readings each cut to whole Wh make their difference up to 1 Wh too large; the lower bound
    is used, so a charger at a tier limit is never priced in the tier above by meter resolution.
    """
    if seconds <= 0 or energy_wh <= 1:
        return 0
    return int((energy_wh - 1) * 3600 // seconds)


def default_tariff() -> Tariff:
    """The compound's tariff: ¥0.25 an hour up to 200 W, rising by tier; ¥3 hold, 12 h max."""
    return Tariff(
        tiers=(Tier(200, 25), Tier(400, 50), Tier(600, 75), Tier(800, 100)),
        unit_minutes=60,
        max_minutes=720,
        hold_fen=300,
    )
