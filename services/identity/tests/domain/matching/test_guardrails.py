"""Guardrails: each case would link on its scores alone, so each test fails without its rule."""

from __future__ import annotations

from zhike_identity.domain.matching.comparison import FIELDS, NULL, compare
from zhike_identity.domain.matching.features import RawRecord, extract_features
from zhike_identity.domain.matching.resolver import frequencies_of, resolve
from zhike_identity.domain.resident_id import check_character


def resident_id(first17: str) -> str:
    return first17 + check_character(first17)


def groups(records: list[RawRecord]) -> list[list[str]]:
    resolution = resolve(records, estimate_model=False)
    by_party: dict[str, list[str]] = {}
    for record, party in zip(records, resolution.party_ids, strict=True):
        by_party.setdefault(party, []).append(record.source_id)
    return sorted(sorted(members) for members in by_party.values())


def test_two_valid_resident_ids_that_differ_are_never_one_person() -> None:
    common = {
        "full_name": "刘建军",
        "phone": "13812345678",
        "email": "liujianjun@example.cn",
        "birth_date": "1980-05-03",
        "address": "北京市朝阳区建国路88号1单元101",
    }
    records = [
        RawRecord(
            "cards",
            "a",
            id_type="RESIDENT_ID",
            id_number=resident_id("11010519800503001"),
            **common,
        ),
        RawRecord(
            "loans",
            "b",
            id_type="RESIDENT_ID",
            id_number=resident_id("11010519800503003"),
            **common,
        ),
    ]
    assert groups(records) == [["a"], ["b"]]


def test_a_household_sharing_address_and_landline_is_not_merged() -> None:
    home = {"phone": "010-62345678", "address": "北京市海淀区学院路5号3单元402"}
    records = [
        RawRecord(
            "core_deposits",
            "father",
            full_name="刘建国",
            birth_date="1960-02-11",
            gender="男",
            **home,
        ),
        RawRecord(
            "core_deposits", "son", full_name="刘伟", birth_date="1988-09-30", gender="男", **home
        ),
        RawRecord(
            "cards", "mother", full_name="王秀英", birth_date="1962-07-01", gender="女", **home
        ),
    ]
    assert groups(records) == [["father"], ["mother"], ["son"]]


def test_twins_with_the_same_birth_date_and_home_stay_two_people() -> None:
    home = {
        "phone": "13900001111",
        "address": "上海市浦东新区世纪大道100号",
        "birth_date": "1995-03-15",
    }
    records = [
        RawRecord("call_centre", "twin-1", full_name="陈晨", **home),
        RawRecord("call_centre", "twin-2", full_name="陈曦", **home),
    ]
    assert groups(records) == [["twin-1"], ["twin-2"]]


def test_placeholder_values_are_no_evidence() -> None:
    junk = {"phone": "00000000000", "email": "test@test.com", "address": "无"}
    records = [
        RawRecord("branch", "w1", full_name="王伟", birth_date="1979-01-01", **junk),
        RawRecord("branch", "w2", full_name="王伟", birth_date="1990-12-12", **junk),
    ]
    assert groups(records) == [["w1"], ["w2"]]


def test_a_recycled_phone_number_does_not_join_strangers() -> None:
    old_owner = RawRecord(
        "mobile_banking",
        "old-owner",
        full_name="张三",
        phone="13712345678",
        email="zhangsan@example.cn",
    )
    new_owner = RawRecord(
        "mobile_banking", "new-owner", full_name="李四", phone="13712345678", gender="男"
    )
    assert groups([old_owner, new_owner]) == [["new-owner"], ["old-owner"]]
    # The number is no evidence at all between people whose names disagree: it may have
    # changed hands (carriers recycle numbers after about 90 days).
    pattern = compare(extract_features(old_owner), extract_features(new_owner))
    assert dict(zip(FIELDS, pattern, strict=True))["phone"] == NULL


def test_the_same_person_across_scripts_and_id_forms_is_one_party() -> None:
    first17 = "11010519491231002"
    records = [
        RawRecord(
            "core_deposits",
            "d1",
            full_name="劉建軍",
            id_type="RESIDENT_ID",
            id_number=resident_id(first17),
            phone="+86 138-1234-5678",
        ),
        RawRecord(
            "fx_passport",
            "f1",
            full_name="LIU,JIANJUN",
            phone="13812345678",
            birth_date="19491231",
            gender="M",
        ),
        RawRecord(
            "cards",
            "c1",
            full_name="刘建军",
            id_type="RESIDENT_ID",
            id_number="110105491231002",
            email="LJJ@Example.cn",
        ),
    ]
    assert groups(records) == [["c1", "d1", "f1"]]


def test_one_customers_address_on_his_many_records_stays_evidence() -> None:
    # Twelve records of one customer, his name typed three ways, his birth date missing on some:
    # his address is held by one person, not by twelve (issue 14).
    names = ["Arthur Jackson", "JACKSON Artie", "Jackson, Arthur"]
    records = [
        RawRecord(
            "passbook",
            f"r{i}",
            full_name=names[i % 3],
            birth_date="" if i % 4 == 0 else "1967-11-11",
            address="Blk 298 Orchard Road #26-122, Singapore 554624",
        )
        for i in range(12)
    ]
    assert groups(records) == [sorted(f"r{i}" for i in range(12))]


def test_an_address_held_by_many_different_people_stops_counting() -> None:
    # A branch's address typed in for ten different customers, two records each: each pair of
    # one customer links by name and birth date, but no one links to anyone else through it,
    # even where names agree partly and one birth date is missing.
    branch = "1 Queen's Road Central, Central, Hong Kong"
    given = ["Amy", "Ben", "Carl", "Dora", "Evan", "Fay", "Gus", "Hugo", "Ivy", "Joan"]
    records = []
    for n, name in enumerate(given):
        for copy in range(2):
            records.append(
                RawRecord(
                    "branch",
                    f"{name}-{copy}",
                    full_name=f"{name} Chan",
                    birth_date=f"19{60 + n}-0{1 + copy % 2}-1{n}" if copy == 0 else "",
                    address=branch,
                )
            )
    features = [extract_features(r) for r in records]
    freq = frequencies_of(features)
    assert freq.too_common("address", features[0].address.text if features[0].address else "")
    assert all(len(group) <= 2 for group in groups(records))
