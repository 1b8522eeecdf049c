from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhike_runtime.errors import InvalidArgument
from zhike_runtime.ids import new_id
from zhike_runtime.validation import Violations, iana_zone


@given(st.text(max_size=300))
def test_any_text_is_either_accepted_clean_or_named_as_a_violation(value: str) -> None:
    v = Violations()
    cleaned = v.text("party.name", value, max_length=200)
    if v:
        with pytest.raises(InvalidArgument) as raised:
            v.raise_if_any()
        assert [x.field for x in raised.value.violations] == ["party.name"]
        assert cleaned == ""
    else:
        assert len(cleaned) <= 200
        assert cleaned == cleaned.strip()
        assert "\x00" not in cleaned


@pytest.mark.parametrize(
    "value", ["a\x00b", "zero\u200bwidth", "rtl\u202eoverride", "bell\x07", "x" * 201]
)
def test_controls_invisible_characters_and_oversize_are_refused(value: str) -> None:
    v = Violations()
    v.text("f", value)
    assert v


def test_every_violation_is_reported_at_once() -> None:
    v = Violations()
    v.text("a", "", required=True)
    v.token("b", "has.dot")
    v.uuid("c", "nope")
    with pytest.raises(InvalidArgument) as raised:
        v.raise_if_any()
    assert [x.field for x in raised.value.violations] == ["a", "b", "c"]


@pytest.mark.parametrize("value", ["a.b", "a*", ">", "a b", "", "x" * 65])
def test_tokens_that_could_escape_a_nats_subject_are_refused(value: str) -> None:
    v = Violations()
    v.token("source_system", value)
    assert v


def test_uuid_must_be_canonical() -> None:
    good = new_id()
    v = Violations()
    assert v.uuid("id", good) == good
    v.uuid("id", good.upper())
    v.uuid("id", "' OR 1=1 --")
    assert len(list(_fields(v))) == 2


def test_new_ids_are_version_7_and_ordered_by_time() -> None:
    ids = [new_id() for _ in range(200)]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert len(set(ids)) == 200
    # The first 48 bits are milliseconds: later ids never sort before earlier ones' timestamps.
    stamps = [uuid.UUID(i).int >> 80 for i in ids]
    assert stamps == sorted(stamps)


def _fields(v: Violations) -> list[str]:
    try:
        v.raise_if_any()
    except InvalidArgument as error:
        return [x.field for x in error.violations]
    return []


@pytest.mark.parametrize(
    "name", ["localtime", "posixrules", "Factory", "posix/Asia/Shanghai", "right/UTC", "Asia"]
)
def test_a_zone_file_whose_meaning_depends_on_the_host_is_no_time_zone(name: str) -> None:
    # `localtime` is the host's own setting: quiet hours would move with each container's.
    assert iana_zone(name) is None


@pytest.mark.parametrize("name", ["Asia/Shanghai", "UTC", "Europe/London", "Etc/GMT-8"])
def test_a_zone_of_the_iana_database_is_a_time_zone(name: str) -> None:
    zone = iana_zone(name)
    assert zone is not None
    assert zone.key == name
