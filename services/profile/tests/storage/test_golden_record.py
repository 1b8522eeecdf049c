"""The golden record's birth date (identity's GoldenRecordChanged) gives the profile the party's
age, which segment rules read: young_professional is `age >= 25 && age <= 35 &&
salary_months(3) >= 2`. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid

from google.type import date_pb2

from zhike.profile.v1 import events_pb2
from zhike_profile.domain.facts import SourceKey

from ..profile_harness import Harness, age_facts
from ..source_facts import T0, account_opened, salary_paid, source_event

YOUNG_PROFESSIONAL = "young_professional"
THIRTY = dt.date(1996, 5, 1)  # 30 on T0 (2026-11-02)
FORTY = dt.date(1986, 5, 1)
T1 = T0 + dt.timedelta(minutes=1)
T2 = T0 + dt.timedelta(minutes=2)
T3 = T0 + dt.timedelta(minutes=3)
CORE = SourceKey("core", "C-1")
CARDS = SourceKey("cards", "K-1")


def party() -> str:
    return str(uuid.uuid4())


async def salaried(harness: Harness, key: SourceKey, party_id: str) -> None:
    """The record linked to the party, with salary credited in October and November (2 of the
    last 3 months on T0)."""
    await harness.linked(
        f"link-{key.source_record_id}", key, party_id, 1, T0 - dt.timedelta(days=60)
    )
    system, record = key.source_system, key.source_record_id
    account = f"{record}-CUR"
    at = T0 - dt.timedelta(days=50)
    await harness.source(
        source_event(system, record, f"o-{record}", 1, at, **account_opened(account))
    )
    for sequence, day in (
        (2, dt.datetime(2026, 10, 10, 2, tzinfo=dt.UTC)),
        (3, T0 - dt.timedelta(hours=1)),
    ):
        await harness.source(
            source_event(
                system, record, f"s{sequence}-{record}", sequence, day, **salary_paid(account)
            )
        )


async def segments(harness: Harness, party_id: str) -> set[str]:
    view = await harness.profile(party_id)
    assert view.assessment is not None
    return {segment.name for segment in view.assessment.segments}


async def birth_date(harness: Harness, party_id: str) -> dt.date | None:
    facts = (await harness.profile(party_id)).facts
    assert facts is not None
    return facts.birth_date


def segment_facts(changes: list[events_pb2.ProfileChanged], party_id: str) -> list[tuple[str, str]]:
    """(entered/left, segment) for every segment fact told about the party, in order."""
    told = []
    for change in changes:
        if change.party_id != party_id:
            continue
        for fact in change.facts:
            if fact.HasField("segment_entered"):
                told.append(("entered", fact.segment_entered.segment))
            elif fact.HasField("segment_left"):
                told.append(("left", fact.segment_left.segment))
    return told


async def test_a_golden_birth_date_making_a_salaried_party_30_enters_young_professional(
    harness: Harness,
) -> None:
    party_id = party()
    await salaried(harness, CORE, party_id)
    assert YOUNG_PROFESSIONAL not in await segments(harness, party_id)  # age unknown
    told_before = len(await harness.changes())

    await harness.named("g1", party_id, "刘晓燕", T1, THIRTY)

    assert await birth_date(harness, party_id) == THIRTY
    assert YOUNG_PROFESSIONAL in await segments(harness, party_id)
    (told,) = (await harness.changes())[told_before:]
    assert segment_facts([told], party_id) == [("entered", YOUNG_PROFESSIONAL)]
    # ProfileChanged names the segment; the birth date stays in the profile.
    payload = told.SerializeToString()
    assert b"1996-05-01" not in payload
    assert b"19960501" not in payload


async def test_an_older_golden_record_arriving_late_changes_neither_birth_date_nor_name(
    harness: Harness,
) -> None:
    party_id = party()
    await salaried(harness, CORE, party_id)
    await harness.named("g2", party_id, "刘晓燕", T2, THIRTY)
    told_before = len(await harness.changes())

    await harness.named("g1", party_id, "刘小燕", T1, FORTY)

    view = await harness.profile(party_id)
    assert view.facts is not None
    assert (view.profile.display_name, view.facts.birth_date) == ("刘晓燕", THIRTY)
    assert YOUNG_PROFESSIONAL in await segments(harness, party_id)
    assert len(await harness.changes()) == told_before  # nothing changed: nothing told


async def test_a_salaried_party_without_a_birth_date_is_not_a_young_professional(
    harness: Harness,
) -> None:
    party_id = party()
    await salaried(harness, CORE, party_id)

    await harness.named("g1", party_id, "刘晓燕", T1, None)

    assert await birth_date(harness, party_id) is None
    assert YOUNG_PROFESSIONAL not in await segments(harness, party_id)
    assert YOUNG_PROFESSIONAL not in {
        name for _, name in segment_facts(await harness.changes(), party_id)
    }


async def test_a_newer_golden_record_without_a_birth_date_takes_the_party_out_of_the_segment(
    harness: Harness,
) -> None:
    party_id = party()
    await salaried(harness, CORE, party_id)
    await harness.named("g1", party_id, "刘晓燕", T1, THIRTY)

    # e.g. a split took away the record the birth date came from
    await harness.named("g2", party_id, "刘晓燕", T2, None)

    assert await birth_date(harness, party_id) is None
    assert segment_facts(await harness.changes(), party_id)[-1] == ("left", YOUNG_PROFESSIONAL)


async def test_after_a_merge_the_survivor_keeps_its_own_golden_birth_date_until_identity_sends_its_new_one(
    harness: Harness,
) -> None:
    survivor, retired = party(), party()
    await harness.linked("link-core", CORE, survivor, 1, T0 - dt.timedelta(days=60))
    await harness.named("g-survivor", survivor, "刘晓燕", T1, FORTY)
    await salaried(harness, CARDS, retired)
    await harness.named("g-retired", retired, "刘晓燕", T1, THIRTY)
    assert YOUNG_PROFESSIONAL in await segments(harness, retired)

    await harness.merged("m1", survivor, [retired], T2)

    # GetProfile by either id answers with the survivor: the salaried record, the survivor's date.
    for asked in (survivor, retired):
        view = await harness.profile(asked)
        assert view.facts is not None
        assert (view.profile.party_id, view.facts.birth_date) == (survivor, FORTY)
    assert YOUNG_PROFESSIONAL not in await segments(harness, survivor)

    # identity's GoldenRecordChanged for the survivor, from the merged records.
    await harness.named("g-merged", survivor, "刘晓燕", T3, THIRTY)

    assert YOUNG_PROFESSIONAL in await segments(harness, survivor)
    assert segment_facts(await harness.changes(), survivor)[-1] == ("entered", YOUNG_PROFESSIONAL)


async def test_a_birth_date_arriving_changing_and_leaving_tells_the_age_whenever_it_differs(
    harness: Harness,
) -> None:
    party_id = party()
    await salaried(harness, CORE, party_id)

    await harness.named("g1", party_id, "刘晓燕", T1, THIRTY)
    await harness.named("g2", party_id, "刘晓燕", T2, FORTY)
    # Corrected by a month: still 40 on T0, so nothing about the age to tell.
    await harness.named("g3", party_id, "刘晓燕", T3, dt.date(1986, 4, 1))
    await harness.named("g4", party_id, "刘晓燕", T3 + dt.timedelta(minutes=1), None)

    changes = await harness.changes()
    assert age_facts(changes, party_id) == [(None, 30), (30, 40), (40, None)]
    causes = {c.cause for c in changes if c.party_id == party_id and age_facts([c], party_id)}
    assert causes == {events_pb2.CHANGE_CAUSE_IDENTITY}


async def test_profile_changed_tells_the_age_but_never_the_birth_date(harness: Harness) -> None:
    party_id = party()
    await salaried(harness, CORE, party_id)
    told_before = len(await harness.changes())

    await harness.named("g1", party_id, "刘晓燕", T1, THIRTY)

    (told,) = (await harness.changes())[told_before:]
    assert age_facts([told], party_id) == [(None, 30)]
    payload = told.SerializeToString()
    for spelling in (b"1996-05-01", b"19960501", b"1996/05/01"):
        assert spelling not in payload
    assert date_pb2.Date(year=1996, month=5, day=1).SerializeToString() not in payload
