"""Pricing: tier boundaries, started units, the hold cap, nothing for an empty charge."""

import pytest

from chargeshed.charging.tariff import Tariff, Tier, default_tariff

T = default_tariff()  # 25/50/75/100 fen per hour at <=200/400/600/800 W, hold 300, 12 h


@pytest.mark.parametrize("watts, price", [(0, 25), (200, 25), (201, 50), (400, 50), (401, 75), (800, 100), (950, 100)])
def test_tier_bounds_are_inclusive_and_power_above_the_last_tier_uses_it(watts, price):
    assert T.tier_for(watts).price_fen == price


@pytest.mark.parametrize("seconds, units", [(1, 1), (3599, 1), (3600, 1), (3601, 2), (7200, 2), (0, 0)])
def test_every_started_unit_counts_whole(seconds, units):
    assert T.started_units(seconds) == units


def test_cost_is_units_times_tier_price():
    assert T.cost(seconds=2 * 3600 + 1, tier_watts=250, energy_wh=500) == 3 * 50


def test_cost_never_exceeds_the_hold():
    assert T.cost(seconds=12 * 3600, tier_watts=700, energy_wh=3000) == 300


def test_a_charge_that_delivered_almost_nothing_is_free():
    assert T.cost(seconds=600, tier_watts=0, energy_wh=T.min_billable_wh - 1) == 0
    assert T.cost(seconds=600, tier_watts=150, energy_wh=T.min_billable_wh) == 25


def test_paid_seconds_is_what_the_hold_buys_in_whole_units_within_the_maximum():
    assert T.paid_seconds(150) == 12 * 3600  # 300 / 25 = 12 units, also the maximum
    assert T.paid_seconds(300) == 6 * 3600
    assert T.paid_seconds(700) == 3 * 3600
    odd = Tariff(tiers=(Tier(200, 70),), hold_fen=300)
    assert odd.paid_seconds(100) == 4 * 3600  # 4 whole units of 70 = 280 <= 300


def test_round_trip_through_json_keeps_the_rules():
    assert Tariff.from_dict(T.to_dict()) == T


@pytest.mark.parametrize(
    "bad",
    [
        dict(tiers=()),
        dict(tiers=(Tier(400, 50), Tier(200, 25))),
        dict(tiers=(Tier(200, 0),)),
        dict(tiers=(Tier(200, 25),), hold_fen=0),
    ],
)
def test_nonsense_tariffs_are_refused(bad):
    with pytest.raises(ValueError):
        Tariff(**bad)


@pytest.mark.parametrize("start_wh", [0.0, 0.3, 0.5, 0.9, 13.99, 100.34])
def test_meter_resolution_never_lifts_a_200_w_charger_into_the_next_tier(start_wh):
    from chargeshed.charging.tariff import average_watts

    end_wh = start_wh + 200 * 5 / 60  # five minutes at exactly 200 W, read by a whole-Wh meter
    watts = average_watts(int(end_wh) - int(start_wh), 300)
    assert 180 <= watts <= 200 and T.tier_for(watts).price_fen == 25


def test_average_power_of_a_strong_charger_is_still_seen():
    from chargeshed.charging.tariff import average_watts

    assert T.tier_for(average_watts(int(450 * 5 / 60), 300)).price_fen == 75
