"""Hardware targets: one parser; the CLI binds ports and lists them."""

import json

import pytest

from chargeshed.ports import targets
from chargeshed.ports.targets import TargetError


@pytest.mark.parametrize(
    "text, canonical, device",
    [
        ("sim", "sim", "sim"),
        ("ocpp:CP-0042/2", "ocpp:CP-0042/2", "ocpp:CP-0042"),
        (
            "shelly:shellypro4pm-a8032ab12345/3",
            "shelly:shellypro4pm-a8032ab12345/3",
            "shelly:shellypro4pm-a8032ab12345",
        ),
        ("tasmota:sonoff-pow-7", "tasmota:sonoff-pow-7/1", "tasmota:sonoff-pow-7"),
        ("tasmota:shed/plug-2/2", "tasmota:shed/plug-2/2", "tasmota:shed/plug-2"),
    ],
)
def test_targets_parse_to_a_canonical_form(text, canonical, device):
    parsed = targets.parse(text)
    assert (parsed.text, parsed.device) == (canonical, device)
    assert targets.parse(parsed.text) == parsed


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ocpp:CP1",
        "ocpp:CP1/0",
        "ocpp:/1",
        "shelly:box/x",
        "shelly:b+x/1",
        "tasmota:a/#",
        "modbus:1/2",
        "tasmota:sonoff/9",
        "ocpp:a b/1",
    ],
)
def test_bad_targets_are_refused_with_a_reason(text):
    with pytest.raises(TargetError):
        targets.parse(text)


def test_ports_bind_and_list_as_json(app, runner, make_site):
    make_site()
    result = runner.invoke(args=["ports", "bind", "T11002", "shelly:shed-a/1"])
    assert result.exit_code == 0, result.output
    bad = runner.invoke(args=["ports", "bind", "T11003", "shelly:shed-a"])
    assert bad.exit_code != 0 and "shelly target" in bad.output
    missing = runner.invoke(args=["ports", "bind", "NOPE", "sim"])
    assert missing.exit_code != 0 and "no port NOPE" in missing.output
    listed = json.loads(runner.invoke(args=["ports", "--format", "json"]).output)
    assert {row["code"]: row["hardware_target"] for row in listed} == {
        "T11001": "sim",
        "T11002": "shelly:shed-a/1",
        "T11003": "sim",
        "T11004": "sim",
    }


def test_chargers_add_prints_the_key_once_and_stores_only_its_hash(app, runner):
    from chargeshed.extensions import db
    from chargeshed.ports.models import Charger
    from chargeshed.ports.registry import check_key

    result = runner.invoke(args=["chargers", "add", "CP-0042", "--connectors", "4"])
    assert result.exit_code == 0, result.output
    key = result.output.split("AuthorizationKey: ")[1].split()[0]
    assert 20 <= len(key) <= 40 and int(key, 16) >= 0
    charger = db.session.query(Charger).one()
    assert charger.connectors == 4 and key not in charger.key_hash
    assert check_key("CP-0042", key) and not check_key("CP-0042", key[::-1]) and not check_key("CP-9", key)
    again = runner.invoke(args=["chargers", "add", "CP-0042"])
    assert again.exit_code != 0 and "registered already" in again.output
    listed = json.loads(runner.invoke(args=["chargers", "list", "--format", "json"]).output)
    assert listed == [
        {
            "charge_point_id": "CP-0042",
            "connectors": 4,
            "online": False,
            "last_heard": None,
            "gateway": None,
            "state": None,
            "device_cap": True,
        }
    ]
