"""Agreements: every bad input refused with a clear message and nothing stored; the right terms apply."""

from __future__ import annotations

from datetime import date

import pytest

from chargeshed.extensions import db
from chargeshed.settlement.agreements import AgreementBook, PartyInput, agreements_of
from chargeshed.settlement.models import Agreement
from chargeshed.settlement.periods import SettlementRefused
from tests.settlement.conftest import THREE_PARTIES


def _refused(agree, site, **kwargs) -> str:
    before = db.session.query(Agreement).count()
    with pytest.raises(SettlementRefused) as refused:
        agree(site, **kwargs)
    db.session.rollback()
    assert db.session.query(Agreement).count() == before
    return str(refused.value.message)


def test_shares_must_add_up_to_exactly_100_percent(app, make_site, agree):
    site = make_site()
    short = [PartyInput("运营方", "operator", 6000), PartyInput("物业", "property", 3500)]
    message = _refused(agree, site, parties=short)
    assert "95.00 %" in message and "10,000" in message
    over = [PartyInput("运营方", "operator", 6001), PartyInput("物业", "property", 4000)]
    message = _refused(agree, site, parties=over)
    assert "100.01 %" in message


@pytest.mark.parametrize(
    "parties, words",
    [
        ([], "at least one party"),
        ([PartyInput(" ", "operator", 10_000)], "needs a name"),
        ([PartyInput("a", "operator", 5000), PartyInput("a", "property", 5000)], "only once"),
        ([PartyInput("a", "landlord", 10_000)], "role"),
    ],
)
def test_parties_need_names_roles_and_each_appears_once(app, make_site, agree, parties, words):
    assert words in _refused(agree, make_site(), parties=parties)


def test_electricity_needs_a_payer_and_fees_borne_by_a_party_need_that_party(app, make_site, agree):
    site = make_site()
    unpaid = [PartyInput("a", "operator", 5000), PartyInput("b", "property", 5000)]
    assert "pays the electricity" in _refused(agree, site, parties=unpaid, price=60)
    assert "exactly one party to bear" in _refused(agree, site, parties=unpaid, fee_mode="party")
    both = [
        PartyInput("a", "operator", 5000, pays_electricity=True),
        PartyInput("b", "property", 5000, pays_electricity=True),
    ]
    assert "Only one party" in _refused(agree, site, parties=both, price=60)


def test_overlapping_agreements_of_the_same_sheds_are_refused(app, make_site, agree):
    site = make_site(sheds=(2, 2))
    first = agree(site, date(2026, 1, 1), valid_to=date(2026, 6, 30))
    message = _refused(agree, site, valid_from=date(2026, 6, 1))
    assert f"#{first.id}" in message and "2026-01-01 – 2026-06-30" in message
    assert "overlaps" in _refused(agree, site, valid_from=date(2026, 1, 1))  # same first day
    assert "overlaps" in _refused(agree, site, valid_from=date(2025, 1, 1), valid_to=date(2026, 1, 1))
    # A shed's own agreement is another scope: it takes precedence rather than overlapping.
    agree(site, date(2026, 3, 1), shed_id=site.sheds[1].id)
    # An agreement right after the agreed end is fine.
    agree(site, date(2026, 7, 1))


def test_an_open_ended_agreement_runs_until_the_next_one_starts(app, make_site, agree):
    site = make_site(sheds=(2, 2))
    old = agree(site, date(2026, 1, 1))
    new = agree(site, date(2026, 10, 15), parties=[PartyInput("运营方", "operator", 10_000)])
    own = agree(site, date(2026, 10, 20), valid_to=date(2026, 10, 25), shed_id=site.sheds[1].id)
    book = AgreementBook(agreements_of(site.sheds[0].operator_id, site.id))
    first, second = site.sheds[0].id, site.sheds[1].id
    assert book.ranges[old.id] == (date(2026, 1, 1), date(2026, 10, 14))
    assert book.in_force(first, date(2026, 10, 14)) == old  # old periods keep the old terms
    assert book.in_force(first, date(2026, 10, 15)) == new
    assert book.in_force(second, date(2026, 10, 20)) == own  # the shed's own agreement wins
    assert book.in_force(second, date(2026, 10, 26)) == new  # and the site-wide one resumes after it
    assert book.in_force(first, date(2025, 12, 31)) is None


def test_a_shed_of_another_operator_or_site_cannot_be_named(app, make_site, agree):
    site, other = make_site(), make_site()
    assert "not run by this operator" in _refused(agree, site, shed_id=other.sheds[0].id)


def test_the_stored_agreement_keeps_what_was_entered(app, make_site, agree):
    site = make_site()
    agreement = agree(site, price=62, fee_mode="shared")
    db.session.expire_all()
    stored = db.session.get(Agreement, agreement.id)
    assert [(p.name, p.role, p.share_bp) for p in stored.parties] == [
        (p.name, p.role, p.share_bp) for p in THREE_PARTIES
    ]
    assert stored.electricity_payer.name == THREE_PARTIES[0].name
    assert stored.electricity_fen_per_kwh == 62 and stored.fee_bearer is None


def test_dates_outside_this_century_are_typing_mistakes(app, make_site, agree):
    site = make_site()
    assert "between the years 2000 and 2099" in _refused(agree, site, valid_from=date(9999, 12, 31))
    assert "between the years 2000 and 2099" in _refused(agree, site, valid_to=date(1, 1, 1))
