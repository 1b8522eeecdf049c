"""Generated records → the SourceRecord an adapter sends to identity."""

from __future__ import annotations

from google.type import date_pb2

from zhike.identity.v1 import party_pb2
from zhike_identity_evaluation.dataset import InputRow
from zhike_simulator.records import source_record


def test_messy_dates_and_gender_codes_are_read_as_identity_reads_them() -> None:
    record = source_record(
        InputRow(
            source="loans",
            source_id="LN00000001",
            full_name="刘建军",
            id_number="11010519491231002X",
            birth_date="1949年12月31日",
            gender="男",
            phone="+86 138-0013-0001",
        )
    )
    assert record.key == party_pb2.SourceRecordKey(
        source_system="loans", source_record_id="LN00000001"
    )
    assert record.id_type == party_pb2.ID_TYPE_RESIDENT_ID
    assert record.birth_date == date_pb2.Date(year=1949, month=12, day=31)
    assert record.gender == party_pb2.GENDER_MALE
    assert record.phone == "+86 138-0013-0001"  # as the source holds it: identity normalises


def test_values_that_cannot_be_read_are_left_out() -> None:
    record = source_record(
        InputRow(source="cards", source_id="CRD1", full_name="李娜", birth_date="不详", gender="?")
    )
    assert not record.HasField("birth_date")
    assert record.gender == party_pb2.GENDER_UNSPECIFIED
    assert record.id_type == party_pb2.ID_TYPE_UNSPECIFIED
