"""The public hazard report: anyone on a phone, anonymous allowed, tracked by an unguessable link."""

import io
import re

import pytest
from sqlalchemy import func, select

from chargeshed import create_app
from chargeshed.extensions import db, limiter
from chargeshed.safety.models import HazardCase
from tests.safety import samples

SCRIPT = '<script>alert("x")</script>'


def _case() -> HazardCase:
    db.session.rollback()  # what the page committed, not what its session still holds
    return db.session.execute(select(HazardCase)).scalar_one()


def test_anonymous_report_with_a_photo_gets_a_tracking_link(client, make_site, building, report_data):
    site = make_site()
    data = report_data(building(site, 4).id)
    data["photos"] = [(io.BytesIO(samples.plain_jpeg()), "wire.jpg")]
    response = client.post("/report", data=data, content_type="multipart/form-data")
    assert response.status_code == 303
    case = _case()
    assert response.headers["Location"].endswith(f"/report/t/{case.tracking_token}")
    assert (case.state, case.reporter_id, case.unit, case.floor, case.source) == (
        "reported",
        None,
        2,
        6,
        "public",
    )
    assert len(case.tracking_token) >= 32
    assert [e.action for e in case.events] == ["report"] and case.events[0].actor_id is None
    page = client.get(response.headers["Location"])
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "Received. A patrol will check the place." in text
    assert "Building 4 Unit 2 6F" in text and 'data-testid="track-photo"' in text
    assert page.headers["Cache-Control"] == "no-store" and page.headers["Referrer-Policy"] == "no-referrer"


def test_tracking_tokens_differ_and_a_guessed_token_finds_nothing(client, make_site, building, report_data):
    site = make_site()
    for _ in range(2):
        client.post("/report", data=report_data(building(site, 4).id))
    db.session.rollback()  # what the page committed, not what its session still holds
    tokens = list(db.session.execute(select(HazardCase.tracking_token)).scalars())
    assert len(set(tokens)) == 2
    assert client.get("/report/t/" + tokens[0][:-1] + ("A" if tokens[0][-1] != "A" else "B")).status_code == 404
    assert client.get("/report/t/1").status_code == 404


def test_signed_in_resident_is_recorded_as_reporter(client, make_site, building, report_data, make_resident, login):
    site = make_site()
    user = login(make_resident())
    client.post("/report", data=report_data(building(site, 4).id))
    assert _case().reporter_id == user.id


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"building": ""}, "Choose the building."),
        ({"floor": "", "spot": ""}, "Tell us where: the floor or the spot."),
        ({"hazard_type": ""}, "Choose what kind of hazard it is."),
        ({"hazard_type": "arson"}, "Not a valid choice"),
        ({"building": "999999"}, "Choose a building from the list."),
        ({"floor": "0"}, "Floors start at 1"),
        ({"floor": "abc"}, "Not a valid integer"),
        ({"hazard_type": "other", "description": ""}, "Describe the hazard."),
        ({"plate": "<b>"}, "Use 4 to 12 letters"),
    ],
)
def test_bad_input_gets_a_form_message_and_nothing_is_stored(
    client, make_site, building, report_data, overrides, message
):
    site = make_site()
    response = client.post("/report", data=report_data(building(site, 4).id, **overrides))
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert db.session.execute(select(func.count(HazardCase.id))).scalar_one() == 0


def test_scripts_in_text_fields_are_escaped_everywhere(client, make_site, building, report_data, make_staff, login):
    site = make_site()
    response = client.post(
        "/report", data=report_data(building(site, 4).id, spot=SCRIPT, description=SCRIPT, contact=SCRIPT)
    )
    case = _case()
    assert case.description == SCRIPT  # stored as typed
    tracking = client.get(response.headers["Location"]).get_data(as_text=True)
    login(make_staff("site_manager", site))
    staff_page = client.get(f"/safety/cases/{case.id}").get_data(as_text=True)
    listing = client.get("/safety/cases").get_data(as_text=True)
    for page in (tracking, staff_page, listing):
        assert SCRIPT not in page
        assert "&lt;script&gt;" in page
    assert staff_page.count("&lt;script&gt;") >= 3  # spot, description, contact


def test_tracking_page_shows_no_personal_data(
    client, make_site, building, report_data, make_staff, make_resident, login, clock
):
    from chargeshed.accounts.services import add_bike
    from chargeshed.safety import workflow

    site = make_site()
    owner = make_resident(phone="13912345678")
    owner.display_name, owner.site_id = "Zhang San", site.id
    add_bike(owner, "ZZA12345")
    client.post("/report", data=report_data(building(site, 4).id, contact="13800001111", plate="ZZA12345"))
    case = _case()
    staff = make_staff("patrol", site, name="Patrol Li")
    workflow.act(case, "verify", staff.id, note="Cable from 602 confirmed")
    workflow.link_bike(case, "ZZA12345", staff.id)
    workflow.act(case, "notify", staff.id, channel="wechat", note="Sent to 13912345678")
    db.session.commit()
    page = client.get(f"/report/t/{case.tracking_token}").get_data(as_text=True)
    assert "Owner reminded" in page and "Checked on site: hazard confirmed" in page
    for private in (
        "13800001111",
        "ZZA12345",
        "13912345678",
        "Zhang San",
        "Patrol Li",
        "Cable from 602",
        "WeChat",
    ):
        assert private not in page


def test_the_duplicate_hint_names_the_open_case_at_the_same_place(client, make_site, building, report_data):
    site = make_site()
    b4 = building(site, 4).id
    client.post("/report", data=report_data(b4, unit="2", floor="6", spot="by flat 602's door"))
    url = f"/report/s/{site.id}/similar"
    hint = client.get(f"{url}?building={b4}&unit=2&floor=6", headers={"HX-Request": "true"})
    text = hint.get_data(as_text=True)
    assert hint.status_code == 200 and "<html" not in text
    assert "A case at Building 4 Unit 2 6F is already open" in text
    assert "602" not in text  # the case's own spot is never told

    def hint_text(query: str) -> str:
        return client.get(f"{url}?{query}", headers={"HX-Request": "true"}).get_data(as_text=True)

    assert "already open" not in hint_text(f"building={b4}&unit=2&floor=9")
    assert "already open" not in hint_text(f"building={b4}")  # a building alone locates nothing
    assert "already open" not in hint_text(f"building={b4}&unit=2")
    assert "already open" not in hint_text(f"building={building(site, 5).id}&unit=2&floor=6")
    # Without a unit the hint says the floor only: it never adds what the reporter did not type.
    assert "A case at Building 4 6F is already open" in hint_text(f"building={b4}&floor=6")


def test_building_link_from_a_notice_preselects_the_building(client, make_site, building):
    site = make_site()
    b7 = building(site, 7)
    page = client.get(f"/report/b/{b7.id}").get_data(as_text=True)
    assert re.search(rf'<option selected value="{b7.id}">|<option value="{b7.id}" selected', page)


@pytest.fixture
def limited_app(tmp_path, driver):
    """An app with rate limiting on (the shared fixtures turn it off)."""
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'limits.sqlite3'}",
            "SECRET_KEY": "test",
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_ENABLED": True,
            "RATELIMIT_STORAGE_URI": "memory://",
            "SAFETY_UPLOAD_DIR": str(tmp_path / "up"),
        }
    )
    app.extensions["clock"] = driver.clock
    with app.app_context():
        db.create_all()
        yield app
        db.session.remove()
        db.engine.dispose()
    limiter.reset()


def test_reports_are_rate_limited_per_ip(limited_app, make_site):
    from chargeshed.sites.models import Building

    with limited_app.app_context():
        site = make_site()
        building_id = db.session.execute(select(Building.id).where(Building.site_id == site.id)).scalars().first()
    client = limited_app.test_client()
    client.set_cookie("lang", "en")
    data = {"hazard_type": "flying_wire", "building": str(building_id), "floor": "3"}
    codes = [client.post("/report", data=data, environ_base={"REMOTE_ADDR": "10.0.0.7"}).status_code for _ in range(6)]
    assert codes == [303] * 5 + [429]
    assert client.post("/report", data=data, environ_base={"REMOTE_ADDR": "10.0.0.8"}).status_code == 303
    assert client.get("/report", environ_base={"REMOTE_ADDR": "10.0.0.7"}).status_code == 200


def test_reports_are_rate_limited_per_contact_phone(limited_app, make_site):
    from chargeshed.sites.models import Building

    with limited_app.app_context():
        site = make_site()
        building_id = db.session.execute(select(Building.id).where(Building.site_id == site.id)).scalars().first()
    client = limited_app.test_client()
    data = {
        "hazard_type": "flying_wire",
        "building": str(building_id),
        "floor": "3",
        "contact": "139 0000 1234",
    }
    codes = [
        client.post("/report", data=data, environ_base={"REMOTE_ADDR": f"10.0.1.{i}"}).status_code for i in range(11)
    ]
    assert codes == [303] * 10 + [429]


def test_a_form_sent_back_with_errors_asks_for_the_photos_again(client, make_site, building, report_data):
    site = make_site()
    data = report_data(building(site, 4).id, building="")
    data["photos"] = [(io.BytesIO(samples.plain_jpeg()), "wire.jpg")]
    response = client.post("/report", data=data, content_type="multipart/form-data")
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and "Choose the building." in page
    assert "Please choose the photos again." in page
    assert "Please choose the photos again." not in client.post(
        "/report", data=report_data(building(site, 4).id, building="")
    ).get_data(as_text=True)
