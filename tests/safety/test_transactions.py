"""The safety services flush and leave the commit to their caller; a photo file lives only as long
as the transaction that stored its row commits."""

import os

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from chargeshed.accounts.services import add_bike
from chargeshed.extensions import db
from chargeshed.safety import uploads, workflow
from chargeshed.safety.incidents import sync_incidents
from chargeshed.safety.models import CaseEvent, CasePhoto, HazardCase, Incident
from chargeshed.sites.models import Port
from tests.safety import samples


@pytest.fixture
def photo(en_context):
    with en_context():
        return uploads.clean_photo(samples.plain_jpeg())


@pytest.fixture
def site(make_site):
    return make_site()


@pytest.fixture
def report(site, building):
    """File a report in building 4 of the compound (uncommitted: the test is the caller)."""

    def file(photos=(), **fields):
        return workflow.file_report(workflow.NewReport("flying_wire", building(site, 4).id, floor=6, **fields), photos)

    return file


def _stored(upload_dir) -> list[str]:
    return sorted(os.listdir(upload_dir)) if upload_dir.exists() else []


def _count(model) -> int:
    return db.session.execute(select(func.count()).select_from(model)).scalar_one()


def test_a_report_is_kept_with_its_photo_only_when_the_caller_commits(report, photo, upload_dir):
    kept = report([photo], spot="kept")
    db.session.commit()
    name = db.session.execute(select(CasePhoto.stored_name)).scalar_one()
    assert _stored(upload_dir) == [f"{name}.jpg", f"{name}_t.jpg"]

    report([photo], spot="dropped")
    assert len(_stored(upload_dir)) == 4  # written, waiting for the caller's commit
    db.session.rollback()
    assert _stored(upload_dir) == [f"{name}.jpg", f"{name}_t.jpg"]
    assert db.session.execute(select(HazardCase.id)).scalars().all() == [kept.id] and _count(CasePhoto) == 1


def test_a_session_closed_without_a_commit_leaves_no_photo_file(report, photo, upload_dir):
    report([photo])
    assert _stored(upload_dir)
    db.session.close()  # a request that ended without committing
    assert _stored(upload_dir) == [] and _count(HazardCase) == 0


def test_a_failed_commit_leaves_no_photo_file(report, photo, upload_dir):
    first = report()
    db.session.commit()
    report([photo])
    db.session.add(  # the caller's own row, which breaks its commit
        HazardCase(
            site_id=first.site_id,
            building_id=first.building_id,
            hazard_type="other",
            tracking_token=first.tracking_token,
        )
    )
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()
    assert _stored(upload_dir) == [] and _count(HazardCase) == 1


def test_a_report_that_fails_undoes_only_its_own_work_and_its_files(report, photo, upload_dir, monkeypatch):
    earlier = report(spot="the caller's own work")
    save = uploads.save_files
    calls = []

    def second_fails(name, clean):
        calls.append(name)
        save(name, clean)
        if len(calls) == 2:
            raise OSError("disk full")

    monkeypatch.setattr(uploads, "save_files", second_fails)
    with pytest.raises(OSError):
        report([photo, photo], spot="failed")
    assert _stored(upload_dir) == []
    db.session.commit()  # the caller's transaction is still usable
    assert db.session.execute(select(HazardCase.spot)).scalars().all() == [earlier.spot]
    assert _count(CaseEvent) == 1 and _count(CasePhoto) == 0


def test_a_step_with_a_photo_is_undone_with_its_file_when_the_caller_rolls_back(
    site, report, photo, upload_dir, make_staff, en_context
):
    case = report()
    patrol = make_staff("patrol", site)
    workflow.act(case, "verify", patrol.id)
    db.session.commit()
    with en_context():
        workflow.act(case, "rectify", patrol.id, photo=photo)
    assert case.state == "rectified" and len(_stored(upload_dir)) == 2
    db.session.rollback()
    db.session.refresh(case)
    assert case.state == "verified" and [e.action for e in case.events] == ["report", "verify"]
    assert _stored(upload_dir) == [] and _count(CasePhoto) == 0


def test_a_lost_race_undoes_only_the_step_and_shows_the_case_as_it_now_is(site, report, make_staff, en_context):
    case = report()
    patrol = make_staff("patrol", site, name="Patrol Li")
    db.session.commit()
    stale = db.session.get(HazardCase, case.id)
    assert stale.state == "reported"
    with db.engine.begin() as other:  # another patrol verifies it meanwhile
        other.execute(update(HazardCase).where(HazardCase.id == case.id).values(state="verified"))
    patrol.display_name = "Patrol Li (on duty)"  # the caller's own work, in the same transaction
    db.session.flush()
    with en_context(), pytest.raises(workflow.WorkflowError) as err:
        workflow.act(stale, "no_hazard", patrol.id, note="nothing there")
    assert err.value.code == "changed"
    assert (stale.state, stale.outcome) == ("verified", None)
    db.session.commit()
    db.session.expire_all()
    assert patrol.display_name == "Patrol Li (on duty)"
    assert db.session.execute(select(CaseEvent.action).where(CaseEvent.case_id == case.id)).scalars().all() == [
        "report"
    ]


def test_a_linked_bike_is_kept_only_when_the_caller_commits(site, report, make_resident, make_staff):
    case = report()
    owner = make_resident()
    owner.site_id = site.id
    add_bike(owner, "ZZC12345")
    patrol = make_staff("patrol", site)
    db.session.commit()
    workflow.link_bike(case, "ZZC12345", patrol.id)
    db.session.rollback()
    assert db.session.get(HazardCase, case.id).bike_id is None and _count(CaseEvent) == 1
    bike = workflow.link_bike(case, "ZZC12345", patrol.id)
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(HazardCase, case.id).bike_id == bike.id


def _overload_event(clock):
    from chargeshed.ports.models import PortEvent

    port = db.session.execute(select(Port)).scalars().first()
    db.session.add(PortEvent(port_id=port.id, at=clock.now, kind="fault", detail="overload"))
    db.session.commit()


def test_sync_incidents_leaves_the_commit_to_its_caller(app, make_site, clock):
    make_site()
    _overload_event(clock)
    assert sync_incidents(clock.now).added == 1
    db.session.rollback()
    assert _count(Incident) == 0
    assert sync_incidents(clock.now).added == 1  # nothing of the first run was kept


def test_the_sync_command_commits(app, runner, make_site, clock):
    make_site()
    _overload_event(clock)
    result = runner.invoke(args=["safety-sync"])
    assert result.exit_code == 0 and "occurrences added: 1" in result.output
    db.session.rollback()  # what the command committed, not what its session still holds
    assert _count(Incident) == 1


def test_the_safety_demo_commits_its_cases_and_keeps_their_photos(app, upload_dir):
    from chargeshed.demo import DEMO_PASSWORD, load_demo
    from chargeshed.safety.demo import load_safety_demo

    load_demo(history_days=1, sessions_per_day=1)
    result = load_safety_demo(DEMO_PASSWORD, weeks=2)
    assert result["created"]
    db.session.rollback()  # what the loader committed, not what its session still holds
    assert _count(HazardCase) == result["cases"]
    names = db.session.execute(select(CasePhoto.stored_name)).scalars().all()
    assert names and _stored(upload_dir) == sorted(f"{n}{t}.jpg" for n in names for t in ("", "_t"))
