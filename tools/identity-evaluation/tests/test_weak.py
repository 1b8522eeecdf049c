"""The weak-identifier evaluation set (issue 14): deterministic, of the documented shape, and
noisy as documented."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from zhike_identity_evaluation import weak
from zhike_identity_evaluation.dataset import InputRow, read_grouping, read_records
from zhike_identity_evaluation.weak import NOISE_KINDS, WeakNoise, WeakPerson, WeakSet


@pytest.fixture(scope="module")
def weak_set() -> WeakSet:
    return weak.build(1_500, seed=3)


def rows_by_person(weak_set: WeakSet) -> dict[str, list[InputRow]]:
    grouped: dict[str, list[InputRow]] = defaultdict(list)
    for record in weak_set.records:
        grouped[record.person_id].append(record.row)
    return grouped


def test_same_seed_gives_the_same_records_and_truth() -> None:
    assert weak.generate(200, seed=7) == weak.generate(200, seed=7)


def test_different_seeds_give_different_records() -> None:
    assert weak.generate(200, seed=7)[0] != weak.generate(200, seed=8)[0]


def test_every_person_has_5_to_12_records_and_no_strong_identifier(weak_set: WeakSet) -> None:
    counts = Counter(record.person_id for record in weak_set.records)
    assert len(counts) == 1_500
    assert min(counts.values()) == 5
    assert max(counts.values()) == 12
    for row in weak_set.rows:
        assert (row.id_type, row.id_number, row.phone, row.email) == ("", "", "", "")
        assert row.full_name
        assert row.address


def test_truth_covers_every_record_once_and_keys_are_unique(weak_set: WeakSet) -> None:
    keys = [row.key for row in weak_set.rows]
    assert len(keys) == len(set(keys))
    assert set(weak_set.truth) == set(keys)


def test_written_files_round_trip(tmp_path: Path) -> None:
    written = weak.write_csv(tmp_path, persons=50, seed=1)
    assert read_records(tmp_path / "records.csv") == written.rows
    assert read_grouping(tmp_path / "truth.csv", "person_id") == written.truth


def test_names_are_chinese_and_latin_with_nicknames(weak_set: WeakSet) -> None:
    han = sum(1 for row in weak_set.rows if re.search(r"[\u4e00-\u9fff]", row.full_name))
    assert 0.3 < han / len(weak_set.rows) < 0.6
    nicknamed = [
        r for r in weak_set.records if "nickname" in r.noise and "name_typo" not in r.noise
    ]
    assert nicknamed
    persons = {p.person_id: p for p in weak_set.persons}
    for record in nicknamed[:50]:
        person = persons[record.person_id]
        short_forms = weak.GIVEN_VARIANTS[person.sex][person.given]
        written = record.row.full_name.lower()
        assert any(re.search(rf"\b{form.lower()}\b", written) for form in short_forms), written


def test_addresses_carry_postcodes_in_several_countries_formats(weak_set: WeakSet) -> None:
    addresses = [row.address for row in weak_set.rows]
    formats = {
        "CN": re.compile(r"[\u4e00-\u9fff].*[0-9]{6}"),
        "UK": re.compile(r"\b[A-Z]{1,2}[0-9]{1,2}A? [0-9][A-Z]{2}$"),
        "US": re.compile(r", [A-Z]{2} [0-9]{5}$"),
        "CA": re.compile(r"\b[A-Z][0-9][A-Z] [0-9][A-Z][0-9]$"),
        "HK": re.compile(r"(Kowloon|Hong Kong|Causeway Bay|Wan Chai|North Point|Territories)$"),
    }
    for country, pattern in formats.items():
        assert any(pattern.search(a) for a in addresses), country


def test_birth_dates_hold_typos_swaps_impossible_and_missing_dates(weak_set: WeakSet) -> None:
    persons = {p.person_id: p for p in weak_set.persons}

    def read(text: str) -> tuple[int, int, int]:
        year, month, day = (
            (int(x) for x in re.findall(r"[0-9]+", text))
            if "-" in text or "/" in text or "年" in text
            else (int(text[:4]), int(text[4:6]), int(text[6:]))
        )
        return year, month, day

    seen: Counter[str] = Counter()
    for record in weak_set.records:
        birth = persons[record.person_id].birth
        if "date_missing" in record.noise:
            assert record.row.birth_date == ""
            seen["missing"] += 1
            continue
        year, month, day = read(record.row.birth_date)
        if "date_swapped" in record.noise:
            assert (year, month, day) == (birth.year, birth.day, birth.month)
            seen["swapped"] += 1
        elif "date_impossible" in record.noise:
            with pytest.raises(ValueError, match=r"out of range|must be in"):
                dt.date(year, month, day)
            seen["impossible"] += 1
        elif "date_typo" in record.noise:
            written = f"{year:04d}{month:02d}{day:02d}"
            assert sum(a != b for a, b in zip(written, f"{birth:%Y%m%d}", strict=True)) == 1
            seen["typo"] += 1
        else:
            assert dt.date(year, month, day) == birth
    assert min(seen.values()) > 0
    assert len(seen) == 4


def test_twins_share_surname_birth_date_and_address_not_the_given_name(
    weak_set: WeakSet,
) -> None:
    persons = {p.person_id: p for p in weak_set.persons}
    twins = [p for p in weak_set.persons if p.twin_of is not None]
    assert len(twins) >= 10
    for twin in twins:
        other: WeakPerson = persons[twin.twin_of or ""]
        assert (twin.surname, twin.birth, twin.addresses) == (
            other.surname,
            other.birth,
            other.addresses,
        )
        assert twin.given != other.given


def test_households_are_different_people_at_one_address(weak_set: WeakSet) -> None:
    members: dict[int, list[WeakPerson]] = defaultdict(list)
    for person in weak_set.persons:
        if person.household is not None:
            members[person.household].append(person)
    assert len(members) >= 50
    for people in members.values():
        assert len({p.addresses[0] for p in people}) == 1
        assert len({(p.surname, p.given, p.birth) for p in people}) == len(people)


def test_each_noise_kind_is_applied_near_its_configured_rate(weak_set: WeakSet) -> None:
    rates = WeakNoise()
    for kind in NOISE_KINDS:
        seen = weak_set.opportunities[kind]
        assert seen >= 100, kind
        assert abs(weak_set.observed_rate(kind) - getattr(rates, kind)) < 0.05, kind
