"""The simulated hardware lives outside the worker: its state file survives the process and is shared."""

from __future__ import annotations

import json

from chargeshed.ports.sim import LITHIUM, Bike, SimDriver
from tests.conftest import FakeClock


def test_a_new_driver_finds_relays_and_bikes_as_the_last_one_left_them(tmp_path):
    clock, path = FakeClock(), str(tmp_path / "sim.json")
    first = SimDriver(clock, auto_plug=False, state_path=path)
    first.plug("P1", bike=Bike(LITHIUM, cc_watts=200, cc_minutes=600))
    first.start("P1", "S7")
    clock.advance(minutes=30)
    before = first.read("P1")

    restarted = SimDriver(clock, auto_plug=False, state_path=path)  # a worker started after a crash
    after = restarted.read("P1")
    assert after == before and after.relay_on and after.energy_wh == 100


def test_repeating_the_start_of_the_running_session_does_not_restart_the_charge(tmp_path):
    clock, path = FakeClock(), str(tmp_path / "sim.json")
    driver = SimDriver(clock, auto_plug=False, state_path=path)
    driver.plug("P1", bike=Bike(LITHIUM, cc_watts=200, cc_minutes=600))
    driver.start("P1", "S7")
    clock.advance(minutes=30)
    SimDriver(clock, auto_plug=False, state_path=path).start("P1", "S7")  # the command sent again
    assert driver.read("P1").energy_wh == 100
    driver.start("P1", "S8")  # a different session is a new charge
    assert driver.read("P1").energy_wh == 0


def test_two_processes_sharing_the_file_see_each_others_changes(tmp_path):
    clock, path = FakeClock(), str(tmp_path / "sim.json")
    one = SimDriver(clock, auto_plug=False, state_path=path)
    two = SimDriver(clock, auto_plug=False, state_path=path)
    one.plug("P1", LITHIUM)
    two.set_offline("P2")
    one.start("P1", "S1")
    assert two.read("P1").relay_on
    with open(path, encoding="utf-8") as handle:
        ports = json.load(handle)["ports"]
    assert ports["P1"]["relay_on"] is True and ports["P2"]["offline"] is True
    assert not list(tmp_path.glob(".sim-*"))  # no temporary file left behind
