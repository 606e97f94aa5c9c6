"""Demo safety history for the demo compound: twelve weeks of reports, fewer as the sheds fill up."""

from __future__ import annotations

import io
import random
from datetime import datetime, timedelta

from PIL import Image, ImageDraw
from sqlalchemy import func, select

from chargeshed.accounts.models import ROLE_PATROL, ROLE_RESIDENT, Bike, User
from chargeshed.accounts.services import add_bike, create_user
from chargeshed.extensions import db
from chargeshed.safety import uploads, workflow
from chargeshed.safety.incidents import sync_incidents
from chargeshed.safety.models import HAZARD_TYPES, HazardCase
from chargeshed.safety.stats import local_end_of_day_utc
from chargeshed.sites.models import Site
from chargeshed.timeutil import now as clock_now
from chargeshed.timeutil import to_local

PATROL_LOGIN = "patrol"
SPOTS = ["楼梯间", "电梯厅", "一楼大堂", "消防通道", "窗外飞线", "地下室入口"]
DESCRIPTIONS = {
    "flying_wire": "从6楼窗户拉下来的插线板，连着一辆电动车",
    "bike_indoors": "电梯厅里停了两辆电动车",
    "battery_indoors": "电瓶拿回家里充电",
    "blocked_exit": "楼道堆放杂物，挡住安全出口",
}


def _photo(rnd: random.Random) -> uploads.CleanPhoto:
    """A simple drawn picture standing in for a phone photo."""
    image = Image.new("RGB", (800, 600), (rnd.randint(150, 200),) * 3)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 420, 800, 600), fill=(120, 110, 100))
    draw.rectangle((300, 280, 520, 440), fill=(30, 60, 120))
    draw.line((560, 0, 410, 300), fill=(20, 20, 20), width=8)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    return uploads.clean_photo(buffer.getvalue())


def load_safety_demo(password: str, weeks: int = 12, seed: int = 37) -> dict:
    """Add a patrol user, some bikes and cases in every state to the first compound (once); commits."""
    site = db.session.execute(select(Site).order_by(Site.id)).scalars().first()
    if site is None:
        return {"created": False, "reason": "no compound; run `flask demo` first"}
    if db.session.execute(select(func.count(HazardCase.id)).where(HazardCase.site_id == site.id)).scalar_one():
        return {"created": False, "reason": "safety demo already loaded"}
    rnd = random.Random(seed)
    patrol = db.session.execute(select(User).where(User.login == PATROL_LOGIN)).scalar_one_or_none() or create_user(
        PATROL_LOGIN, password, ROLE_PATROL, site_id=site.id, display_name="巡查 张师傅"
    )
    residents = list(
        db.session.execute(
            select(User).where(User.role == ROLE_RESIDENT, User.site_id == site.id).order_by(User.id)
        ).scalars()
    )
    bikes = []
    for n, resident in enumerate(residents[:4]):
        bikes.append(
            db.session.execute(select(Bike).where(Bike.owner_id == resident.id)).scalars().first()
            or add_bike(resident, f"株A{51230 + n}", "绿色")
        )
    buildings = {b.number: b for b in site.buildings}
    now = clock_now()
    created = 0
    for week in range(weeks):
        # Many reports before the sheds, few after: about 6 a week at first, then 1-2.
        count = max(1, round(6 - week * 0.5 + rnd.uniform(-1, 1)))
        for _ in range(count):
            at = now - timedelta(weeks=weeks - week) + timedelta(hours=rnd.randint(0, 160))
            if at >= now:
                continue
            building = buildings[rnd.choice([4, 4, 10, 10, 2, 7, 5, 12])]
            hazard = rnd.choice(HAZARD_TYPES[:4])
            case = workflow.file_report(
                workflow.NewReport(
                    hazard_type=hazard,
                    building_id=building.id,
                    unit=rnd.randint(1, 2),
                    floor=rnd.randint(1, 18),
                    spot=rnd.choice(SPOTS),
                    description=DESCRIPTIONS[hazard],
                    contact=rnd.choice(["", "", "13900001234"]),
                ),
                [_photo(rnd)] if rnd.random() < 0.7 else [],
                now=at,
            )
            _advance(case, patrol, bikes, rnd, at, now)
            created += 1
    for hours, number, hazard in ((5, 10, HAZARD_TYPES[1]), (30, 4, HAZARD_TYPES[0])):  # not checked yet
        workflow.file_report(
            workflow.NewReport(
                hazard_type=hazard,
                building_id=buildings[number].id,
                unit=2,
                floor=6,
                spot=SPOTS[0],
                description=DESCRIPTIONS[hazard],
            ),
            [_photo(rnd)],
            now=now - timedelta(hours=hours),
        )
        created += 1
    sync_incidents(now)
    db.session.commit()
    return {"created": True, "cases": created, "patrol": patrol.login}


def _advance(case: HazardCase, patrol: User, bikes: list, rnd: random.Random, at: datetime, now: datetime) -> None:
    """Walk a case some way along the workflow, as a patrol would have, never past `now`."""
    age_days = (now - at).days
    if age_days < 1:
        steps = 0
    elif age_days < 4:
        steps = rnd.randint(0, 2)
    elif age_days < 12:
        steps = rnd.randint(1, 5)
    else:
        steps = 6 if rnd.random() < 0.8 else rnd.randint(2, 3)

    def when(hours: float) -> datetime | None:
        moment = at + timedelta(hours=hours)
        return moment if moment < now else None

    t = rnd.uniform(2, 20)
    if steps < 1 or when(t) is None:
        return
    if rnd.random() < 0.12:
        workflow.act(case, workflow.NO_HAZARD, patrol.id, note="现场未发现", now=when(t))
        return
    workflow.act(case, workflow.VERIFY, patrol.id, note="现场确认", now=when(t))
    if bikes and rnd.random() < 0.6:
        workflow.link_bike(case, rnd.choice(bikes).plate, patrol.id, now=when(t + 0.2))
    reminders = rnd.randint(1, 4) if steps >= 2 else 0
    for i in range(reminders):
        t += rnd.uniform(6, 30)
        if when(t) is None:
            return
        workflow.act(
            case,
            workflow.NOTIFY,
            patrol.id,
            channel=rnd.choice(workflow.CHANNELS[:4]),
            first_charge_offered=i == 0,
            now=when(t),
        )
    if steps < 3 or reminders == 0:
        return
    t += 2
    if when(t) is None:
        return
    workflow.act(
        case,
        workflow.SET_DEADLINE,
        patrol.id,
        deadline_at=local_end_of_day_utc(to_local(when(t)).date() + timedelta(days=rnd.randint(3, 7))),
        now=when(t),
    )
    if steps < 4:
        return
    t += rnd.uniform(24, 96)
    if when(t) is None:
        return
    if case.reminder_count >= workflow.MIN_REMINDERS_BEFORE_MOVE and rnd.random() < 0.5:
        workflow.act(case, workflow.MOVE_BIKE, patrol.id, target="shed", note="移至1号车棚", now=when(t))
    else:
        workflow.act(case, workflow.RECTIFY, patrol.id, photo=_photo(rnd), note="已整改", now=when(t))
    t += rnd.uniform(2, 24)
    if steps >= 5 and when(t) is not None:
        workflow.act(case, workflow.CLOSE, patrol.id, now=when(t))
