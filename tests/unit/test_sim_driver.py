"""SimDriver: deterministic, physically plausible charge curves."""

import pytest

from chargeshed.ports.driver import AVAILABLE, CHARGING, FAULTED, FINISHING, SUSPENDED_EV, PortOffline, PortRejected
from chargeshed.ports.sim import LEAD_ACID, LITHIUM, OVERLOAD, STUCK_RELAY, Bike, SimDriver, energy_wh_at, power_at


def test_lithium_runs_constant_current_then_tapers_to_zero(driver, clock):
    bike = Bike(LITHIUM, cc_watts=200, cc_minutes=120, taper_minutes=30)
    driver.plug("P1", bike=bike)
    driver.start("P1", "S1")
    clock.advance(minutes=60)
    reading = driver.read("P1")
    assert (reading.state, reading.watts, reading.energy_wh) == (CHARGING, 200, 200)
    clock.advance(minutes=90)  # 30 min into the taper: 200 * e^-1
    assert driver.read("P1").watts == 74
    clock.advance(hours=5)
    end = driver.read("P1")
    assert end.watts == 0 and end.state == SUSPENDED_EV
    assert 400 + 200 * 30 / 60 * 0.95 < end.energy_wh <= 400 + 100


def test_lead_acid_floats_forever_below_the_full_threshold(driver, clock):
    driver.plug("P1", LEAD_ACID)
    driver.start("P1", "S1")
    clock.advance(hours=11)
    reading = driver.read("P1")
    assert 5 <= reading.watts <= 10 and reading.state == CHARGING


def test_energy_is_the_integral_of_power():
    bike = Bike(LEAD_ACID, cc_watts=180, cc_minutes=100, taper_minutes=50, float_watts=8)
    steps = 6000
    numeric = sum(power_at(bike, (i + 0.5) * 600 / steps) for i in range(steps)) * (600 / steps) / 60
    assert energy_wh_at(bike, 600) == pytest.approx(numeric, rel=1e-3)


def test_same_seed_same_clock_same_readings(clock):
    a, b = SimDriver(clock, seed=5), SimDriver(clock, seed=5)
    for d in (a, b):
        d.start("P9", "S42")
    clock.advance(minutes=37)
    assert a.read("P9") == b.read("P9")


def test_overload_heater_draws_far_more_than_a_bike(driver, clock):
    driver.plug("P1", OVERLOAD)
    driver.start("P1", "S1")
    clock.advance(seconds=10)
    assert driver.read("P1").watts >= 1000


def test_stop_opens_the_relay_but_a_stuck_relay_keeps_delivering(driver, clock):
    driver.plug("P1", LITHIUM)
    driver.plug("P2", STUCK_RELAY)
    for code in ("P1", "P2"):
        driver.start(code, "S")
    clock.advance(minutes=10)
    for code in ("P1", "P2"):
        driver.stop(code, "user_stop")
    assert driver.read("P1").state == FINISHING and driver.read("P1").watts == 0
    assert driver.read("P2").relay_on and driver.read("P2").watts > 0


def test_unplugging_makes_the_port_available_and_keeps_the_energy(driver, clock):
    driver.plug("P1", LITHIUM)
    driver.start("P1", "S1")
    clock.advance(minutes=30)
    delivered = driver.read("P1").energy_wh
    driver.unplug("P1")
    reading = driver.read("P1")
    assert reading.state == AVAILABLE and reading.watts == 0 and reading.energy_wh == delivered


def test_faulted_port_refuses_to_start_and_offline_port_does_not_answer(driver):
    driver.set_fault("P1", "ground_fault")
    with pytest.raises(PortRejected):
        driver.start("P1", "S1")
    assert driver.read("P1").state == FAULTED
    driver.set_offline("P2")
    with pytest.raises(PortOffline):
        driver.read("P2")


def test_speed_factor_compresses_the_curve_but_meters_energy_in_real_time(clock):
    fast = SimDriver(clock, speed=60, auto_plug=False)
    fast.plug("P1", bike=Bike(LITHIUM, cc_watts=200, cc_minutes=120, taper_minutes=30))
    fast.start("P1", "S1")
    clock.advance(seconds=90)  # 90 simulated minutes: still constant current
    assert fast.read("P1").watts == 200
    clock.advance(seconds=36)  # 126 simulated minutes: tapering already
    assert fast.read("P1").watts < 200
    clock.advance(hours=1)  # long after the end: about 200 W x 2 h of curve, metered over real time
    assert fast.read("P1").energy_wh == int(energy_wh_at(fast._ports["P1"].bike, 60 * 60 + 126) / 60)


def test_a_bike_plugged_in_before_the_scan_is_waiting_not_occupied(driver, clock):
    from chargeshed.ports.driver import PREPARING

    driver.plug("P1", LITHIUM)
    assert driver.read("P1").state == PREPARING
    driver.start("P1", "S1")
    clock.advance(minutes=5)
    driver.stop("P1", "user_stop")
    assert driver.read("P1").state == FINISHING  # charged, still plugged in
    driver.unplug("P1")
    driver.plug("P1", LITHIUM)
    assert driver.read("P1").state == PREPARING
