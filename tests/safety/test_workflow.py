"""The case workflow: the guide's steps in order, each timestamped and attributed; illegal steps refused."""

import io

import pytest
from sqlalchemy import select, update

from chargeshed.accounts.services import add_bike
from chargeshed.extensions import db
from chargeshed.safety import workflow
from chargeshed.safety.models import CaseEvent, CasePhoto, HazardCase
from tests.safety import samples


@pytest.fixture
def setup(client, make_site, building, make_staff, login, en_context):
    """A site, a reported case, and a signed-in patrol of that site."""
    site = make_site()
    case = workflow.file_report(
        workflow.NewReport("flying_wire", building(site, 4).id, unit=2, floor=6, spot="stairwell")
    )
    db.session.commit()
    patrol = login(make_staff("patrol", site, name="Patrol Li"))
    return site, case, patrol


def _step(client, case, action, **data):
    fields = {f"{action}-{k}": v for k, v in data.items()}
    return client.post(f"/safety/cases/{case.id}/step/{action}", data=fields, content_type="multipart/form-data")


def test_full_path_report_verify_remind_three_times_deadline_move_close(client, setup, clock):
    site, case, patrol = setup
    assert _step(client, case, "verify", note="Cable from 602").status_code == 303
    for channel in ("wechat", "phone", "visit"):
        clock.advance(hours=20)
        assert _step(client, case, "notify", channel=channel).status_code == 303
    clock.advance(hours=1)
    assert _step(client, case, "set_deadline", deadline="2026-11-25").status_code == 303
    clock.advance(days=6)
    page = client.get(f"/safety/cases/{case.id}").get_data(as_text=True)
    assert "Past deadline" in page and 'data-testid="step-move_bike"' in page
    assert _step(client, case, "move_bike", destination="shed", note="Bike to shed 1").status_code == 303
    assert _step(client, case, "close").status_code == 303
    db.session.rollback()  # what the page committed, not what its session still holds
    db.session.refresh(case)
    assert (case.state, case.outcome, case.reminder_count) == ("closed", "moved", 3)
    events = case.events
    assert [e.action for e in events] == [
        "report",
        "verify",
        "notify",
        "notify",
        "notify",
        "set_deadline",
        "move_bike",
        "close",
    ]
    assert [e.channel for e in events if e.action == "notify"] == ["wechat", "phone", "visit"]
    assert all(e.actor_id == patrol.id for e in events[1:])
    assert [e.at for e in events] == sorted(e.at for e in events) and events[-1].at == clock.now
    assert case.closed_at == clock.now
    timeline = client.get(f"/safety/cases/{case.id}").get_data(as_text=True)
    assert timeline.count("Patrol Li") >= 7 and "Visit at home" in timeline


def test_rectified_needs_an_after_photo(client, setup):
    site, case, patrol = setup
    _step(client, case, "verify")
    refused = _step(client, case, "rectify", note="fixed")
    assert refused.status_code == 400 and "Add an “after” photo" in refused.get_data(as_text=True)
    done = client.post(
        f"/safety/cases/{case.id}/step/rectify",
        content_type="multipart/form-data",
        data={"rectify-note": "wire removed", "rectify-photo": (io.BytesIO(samples.jpeg_with_gps()), "after.jpg")},
    )
    assert done.status_code == 303
    db.session.rollback()  # what the page committed, not what its session still holds
    db.session.refresh(case)
    assert case.state == "rectified"
    after = db.session.execute(select(CasePhoto).where(CasePhoto.kind == "after")).scalar_one()
    assert after.event_id == case.events[-1].id
    assert client.get(f"/safety/photos/{after.id}").status_code == 200
    assert _step(client, case, "close").status_code == 303
    db.session.refresh(case)
    assert (case.state, case.outcome) == ("closed", "rectified")


def test_a_fake_after_photo_is_refused_and_the_case_does_not_move(client, setup):
    site, case, patrol = setup
    _step(client, case, "verify")
    response = client.post(
        f"/safety/cases/{case.id}/step/rectify",
        content_type="multipart/form-data",
        data={"rectify-photo": (io.BytesIO(samples.HTML_AS_JPG), "after.jpg")},
    )
    assert response.status_code == 400 and "not a photo" in response.get_data(as_text=True)
    db.session.refresh(case)
    assert case.state == "verified"


@pytest.mark.parametrize(
    "steps, action, data, status, message",
    [
        ([], "close", {}, 409, "not possible while the case is “Reported”"),
        ([], "notify", {"channel": "wechat"}, 409, "not possible"),
        ([("verify", {})], "verify", {}, 409, "not possible while the case is “Verified on site”"),
        ([("verify", {})], "notify", {}, 400, "Choose how the owner was reminded."),
        (
            [("verify", {}), ("notify", {"channel": "sms"}), ("notify", {"channel": "sms"})],
            "move_bike",
            {"destination": "shed"},
            409,
            "only after 3 reminders (so far: 2)",
        ),
        (
            [("verify", {}), ("notify", {"channel": "sms"})],
            "set_deadline",
            {"deadline": "2026-11-01"},
            400,
            "Choose a deadline in the future.",
        ),
        ([], "no_hazard", {}, 400, "Say what you found on site."),
        ([("verify", {})], "escalate", {"authority": "army"}, 400, "Choose who the case was passed to."),
        (
            [("verify", {}), ("escalate", {"authority": "fire_brigade"})],
            "close",
            {},
            400,
            "Say how the authority resolved it.",
        ),
        (
            [("no_hazard", {"note": "nothing there"})],
            "verify",
            {},
            409,
            "not possible while the case is “Closed”",
        ),
        ([], "duplicate", {"duplicate_of": "999"}, 400, "Choose another open case"),
    ],
)
def test_illegal_or_incomplete_steps_are_refused_with_a_message(client, setup, steps, action, data, status, message):
    site, case, patrol = setup
    for earlier, fields in steps:
        assert _step(client, case, earlier, **fields).status_code == 303
    db.session.refresh(case)
    before = (case.state, len(case.events), case.reminder_count)
    response = _step(client, case, action, **data)
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    db.session.expire_all()
    case = db.session.get(HazardCase, case.id)
    assert (case.state, len(case.events), case.reminder_count) == before


def test_unknown_step_is_a_404(client, setup):
    site, case, patrol = setup
    assert _step(client, case, "delete").status_code == 404
    assert _step(client, case, "link_bike").status_code == 404


def test_a_step_on_a_stale_view_is_refused_when_someone_else_moved_the_case(app, setup):
    site, case, patrol = setup
    stale = db.session.get(HazardCase, case.id)
    assert stale.state == "reported"  # what this person's page shows
    with db.engine.begin() as other:  # another patrol verifies it meanwhile
        other.execute(update(HazardCase).where(HazardCase.id == case.id).values(state="verified"))
    with (
        app.test_request_context(headers={"Cookie": "lang=en"}),
        pytest.raises(workflow.WorkflowError) as err,
    ):
        workflow.act(stale, "verify", patrol.id)
    assert err.value.code == "changed"
    assert db.session.execute(select(CaseEvent.action).where(CaseEvent.case_id == case.id)).scalars().all() == [
        "report"
    ]


def test_escalation_is_logged_and_closing_records_what_the_authority_did(client, setup):
    site, case, patrol = setup
    _step(client, case, "verify")
    _step(client, case, "escalate", authority="residents_committee")
    _step(client, case, "escalate", authority="fire_brigade", note="Owner refuses")
    _step(client, case, "notify", channel="notice")
    assert _step(client, case, "close", note="Fire brigade inspected; wire removed").status_code == 303
    db.session.rollback()  # what the page committed, not what its session still holds
    db.session.refresh(case)
    assert (case.state, case.outcome, case.escalated_to, case.reminder_count) == (
        "closed",
        "escalated",
        "fire_brigade",
        1,
    )
    assert [e.target for e in case.events if e.action == "escalate"] == [
        "residents_committee",
        "fire_brigade",
    ]


def test_duplicate_points_at_the_earlier_open_case(client, setup, building):
    site, first, patrol = setup
    second = workflow.file_report(workflow.NewReport("flying_wire", building(site, 4).id, unit=2, floor=6))
    db.session.commit()
    assert _step(client, second, "duplicate", duplicate_of=str(first.id)).status_code == 303
    db.session.rollback()  # what the page committed, not what its session still holds
    db.session.refresh(second)
    assert (second.state, second.outcome, second.duplicate_of_id) == ("closed", "duplicate", first.id)
    assert _step(client, first, "duplicate", duplicate_of=str(first.id)).status_code == 400


def test_notes_can_be_added_even_after_close_and_nothing_is_ever_deleted(client, setup):
    site, case, patrol = setup
    _step(client, case, "no_hazard", note="Only a bag of shoes")
    assert _step(client, case, "note", note="Checked again next day").status_code == 303
    db.session.rollback()  # what the page committed, not what its session still holds
    db.session.refresh(case)
    assert [e.action for e in case.events] == ["report", "no_hazard", "note"]
    assert case.state == "closed" and case.outcome == "no_hazard"
    assert client.post(f"/safety/cases/{case.id}/delete").status_code in (404, 405)


def test_bike_link_shows_repeat_offender_and_first_charge_nudge(client, setup, building, make_resident):
    site, case, patrol = setup
    owner = make_resident()
    owner.building, owner.unit, owner.site_id = 4, 2, site.id
    add_bike(owner, "ZZB77777")
    earlier = workflow.file_report(
        workflow.NewReport("bike_indoors", building(site, 4).id, floor=1, spot="lobby", plate="ZZB77777")
    )
    db.session.commit()
    page = client.get(f"/safety/cases/{earlier.id}").get_data(as_text=True)
    assert "The reported plate ZZB77777 is registered." in page
    assert client.post(f"/safety/cases/{earlier.id}/bike", data={"plate": "zzb 77777"}).status_code == 303
    assert client.post(f"/safety/cases/{case.id}/bike", data={"plate": "ZZB77777"}).status_code == 303
    db.session.rollback()  # what the page committed, not what its session still holds
    linked = db.session.execute(select(HazardCase.bike_id).where(HazardCase.id.in_([earlier.id, case.id]))).scalars()
    assert set(linked) == {owner.bikes[0].id}
    page = client.get(f"/safety/cases/{case.id}").get_data(as_text=True)
    assert "Repeat: 2 cases for this owner" in page
    assert 'data-testid="never-charged"' in page and "help you with your first charge" in page
    listing = client.get("/safety/cases").get_data(as_text=True)
    assert listing.count("Repeat: 2 cases") == 2
    unknown = client.post(f"/safety/cases/{case.id}/bike", data={"plate": "NOPE1234"})
    assert unknown.status_code == 400 and "No registered bike has the plate NOPE1234" in unknown.get_data(as_text=True)


def test_reminder_with_first_charge_offer_is_logged(client, setup):
    site, case, patrol = setup
    _step(client, case, "verify")
    _step(client, case, "notify", channel="wechat", first_charge_offered="y")
    db.session.rollback()  # what the page committed, not what its session still holds
    db.session.refresh(case)
    assert case.events[-1].first_charge_offered is True
    assert "first charge offered" in client.get(f"/safety/cases/{case.id}").get_data(as_text=True)


def test_patrol_files_a_case_attributed_to_them(client, setup, building, report_data):
    site, _case, patrol = setup
    response = client.post("/safety/cases/new", data=report_data(building(site, 9).id, floor="", spot="gate"))
    assert response.status_code == 303
    db.session.rollback()  # what the page committed, not what its session still holds
    case = db.session.execute(select(HazardCase).where(HazardCase.source == "patrol")).scalar_one()
    assert case.events[0].actor_id == patrol.id and case.reporter_id is None
