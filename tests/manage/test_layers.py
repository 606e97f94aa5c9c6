"""Feature code runs without Flask's request machinery: the clock is injected, refusals are domain errors."""

from __future__ import annotations

from datetime import datetime

import pytest

from chargeshed import timeutil
from chargeshed.accounts.access import get_site_or_404, require_role
from chargeshed.accounts.models import ROLE_ADMIN, ROLE_PATROL, ROLE_SITE_MANAGER
from chargeshed.errors import Forbidden, NotFound
from tests.manage.conftest import PASSWORD

MOMENT = datetime(2030, 1, 2, 3, 4, 5)


def test_the_clock_is_injected_without_any_app():
    with timeutil.use_clock(lambda: MOMENT):
        assert timeutil.now() == MOMENT
    assert timeutil.now() != MOMENT


def test_an_app_context_follows_the_apps_clock(app, clock):
    assert timeutil.now() == clock.now
    clock.advance(minutes=5)
    assert timeutil.now() == clock.now


def test_lookups_raise_domain_errors_and_the_web_answers_404_and_403(app, client, make_site, make_staff, login):
    site = make_site()
    other = make_site(name="另一个小区")
    manager = make_staff(ROLE_SITE_MANAGER, site)
    with pytest.raises(NotFound):
        get_site_or_404(manager, other.id)
    assert get_site_or_404(manager, site.id) is site
    with pytest.raises(Forbidden):
        require_role(make_staff(ROLE_PATROL, site), (ROLE_ADMIN,))
    login(manager, PASSWORD)
    assert client.get(f"/manage/sites/{other.id}").status_code == 404
