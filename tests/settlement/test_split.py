"""Property tests of the split arithmetic: exact sums, no party more than one fen from its exact share."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargeshed.settlement.split import PartyTerms, electricity_fen, largest_remainder, split_revenue

amounts = st.integers(min_value=-(10**12), max_value=10**12)


@st.composite
def basis_points(draw, min_parties: int = 1, max_parties: int = 8) -> list[int]:
    """Shares in basis points that sum to exactly 10,000 (zeros allowed)."""
    n = draw(st.integers(min_value=min_parties, max_value=max_parties))
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=10_000), min_size=n - 1, max_size=n - 1)))
    return [b - a for a, b in zip([0] + cuts, cuts + [10_000], strict=True)]


@given(total=amounts, weights=st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=12))
def test_largest_remainder_sums_exactly_and_each_part_is_within_one_fen_of_its_exact_share(total, weights):
    parts = largest_remainder(total, weights)
    assert sum(parts) == total
    whole = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        exact = Fraction(total * weight, whole) if whole else Fraction(total, len(weights))
        assert abs(part - exact) < 1
        if whole and weight == 0:
            assert part == 0  # a party without a share never gets a leftover fen


@given(total=amounts, weights=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=8))
def test_a_refund_splits_as_the_mirror_of_revenue(total, weights):
    assert largest_remainder(-total, weights) == [-p for p in largest_remainder(total, weights)]


def test_leftover_fen_go_to_the_largest_remainders_then_to_the_earlier_party():
    assert largest_remainder(100, [1, 1, 1]) == [34, 33, 33]
    assert largest_remainder(2, [3333, 3334, 3333]) == [1, 1, 0]  # remainders 6666 < 6668 > 6666, then order
    assert largest_remainder(0, [1, 2]) == [0, 0]


def test_largest_remainder_refuses_nonsense():
    with pytest.raises(ValueError):
        largest_remainder(100, [])
    with pytest.raises(ValueError):
        largest_remainder(100, [5, -1])


@given(
    net=st.integers(min_value=-(10**9), max_value=10**10),
    energy=st.integers(min_value=0, max_value=10**9),
    fees=st.integers(min_value=0, max_value=10**7),
    price=st.integers(min_value=0, max_value=200),
    shares=basis_points(),
    fee_mode=st.sampled_from(["shared", "party"]),
    data=st.data(),
)
def test_the_parties_get_exactly_net_less_fees_and_each_share_is_within_one_fen(
    net, energy, fees, price, shares, fee_mode, data
):
    payer = data.draw(st.integers(min_value=0, max_value=len(shares) - 1))
    bearer = data.draw(st.integers(min_value=0, max_value=len(shares) - 1))
    parties = [
        PartyTerms(f"p{i}", "other", bp, pays_electricity=i == payer, bears_fees=i == bearer)
        for i, bp in enumerate(shares)
    ]
    split = split_revenue(net, energy, fees, parties, price, fee_mode)

    assert split.payout_fen == net - fees
    assert split.electricity_fen == electricity_fen(energy, price)
    assert split.distributable_fen == net - split.electricity_fen - (fees if fee_mode == "shared" else 0)
    assert sum(p.share_fen for p in split.payouts) == split.distributable_fen
    for i, (payout, bp) in enumerate(zip(split.payouts, shares, strict=True)):
        assert abs(payout.share_fen - Fraction(split.distributable_fen * bp, 10_000)) < 1
        assert payout.electricity_fen == (split.electricity_fen if i == payer else 0)
        assert payout.fees_fen == (fees if fee_mode == "party" and i == bearer else 0)


@given(energy=st.integers(min_value=0, max_value=10**9), price=st.integers(min_value=0, max_value=10_000))
def test_electricity_is_rounded_to_the_nearest_fen_half_up(energy, price):
    exact = Fraction(energy * price, 1000)
    cost = electricity_fen(energy, price)
    assert -Fraction(1, 2) < cost - exact <= Fraction(1, 2)


def test_a_worked_example():
    """¥1,000.00 net, 80 kWh at ¥0.60 to the operator, ¥6.01 fees shared, 60/30/10."""
    parties = [
        PartyTerms("运营方", "operator", 6000, pays_electricity=True),
        PartyTerms("物业", "property", 3000),
        PartyTerms("业委会", "owners_committee", 1000),
    ]
    split = split_revenue(100_000, 80_000, 601, parties, 60, "shared")
    assert split.electricity_fen == 4800
    assert split.distributable_fen == 100_000 - 4800 - 601 == 94_599
    # exact shares 56759.4, 28379.7, 9459.9: floors 56759, 28379, 9459 leave 2 fen for .9 and .7
    assert [p.share_fen for p in split.payouts] == [56759, 28380, 9460]
    assert [p.payout_fen for p in split.payouts] == [61559, 28380, 9460]


def test_shares_that_do_not_make_100_percent_are_refused():
    with pytest.raises(ValueError):
        split_revenue(100, 0, 0, [PartyTerms("a", "other", 5000), PartyTerms("b", "other", 4000)])
