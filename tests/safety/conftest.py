"""Fixtures of the safety tests: uploads in a temporary folder, staff users, cases, image samples."""

from __future__ import annotations

import pytest

from chargeshed.accounts.services import create_user
from chargeshed.extensions import db
from chargeshed.sites.models import Building
from tests.safety import samples


@pytest.fixture(autouse=True)
def _safety_defaults(request, tmp_path):
    """Photos go to a temporary folder (never the repository's instance/); pages in English.

    English is the msgid language, so tests read the words a person sees. Only tests that use
    the shared `app`/`client` fixtures get them (the browser test builds its own app).
    """
    if "app" in request.fixturenames:
        request.getfixturevalue("app").config["SAFETY_UPLOAD_DIR"] = str(tmp_path / "uploads")
    if "client" in request.fixturenames:
        request.getfixturevalue("client").set_cookie("lang", "en")


@pytest.fixture
def upload_dir(app, tmp_path):
    """The folder photos are stored in."""
    return tmp_path / "uploads"


@pytest.fixture
def make_staff(app):
    """Create a staff user (password 'secret-pass') of a role, for a site or operator."""
    counter = {"n": 0}

    def factory(role: str, site=None, operator_id: int | None = None, name: str = ""):
        counter["n"] += 1
        user = create_user(
            f"{role}{counter['n']}",
            "secret-pass",
            role,
            site_id=site.id if site else None,
            operator_id=operator_id,
            display_name=name or f"{role} {counter['n']}",
        )
        db.session.commit()
        return user

    return factory


@pytest.fixture
def building(app):
    """Look up a building of a site by number."""

    def find(site, number: int) -> Building:
        return db.session.execute(
            db.select(Building).where(Building.site_id == site.id, Building.number == number)
        ).scalar_one()

    return find


@pytest.fixture
def report_data():
    """Form data of a valid report; override fields by keyword."""

    def make(building_id: int, **overrides):
        data = {
            "hazard_type": "flying_wire",
            "building": str(building_id),
            "unit": "2",
            "floor": "6",
            "spot": "stairwell",
            "description": "A cable runs down from 6F to a bike",
            "contact": "",
            "plate": "",
        }
        data.update(overrides)
        return data

    return make


@pytest.fixture
def jpeg():
    """A plain JPEG photo (bytes)."""
    return samples.plain_jpeg()


@pytest.fixture
def en_context(app):
    """A request context in English, for services that speak to people."""
    return lambda: app.test_request_context(headers={"Cookie": "lang=en"})
