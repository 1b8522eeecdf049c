"""A generated record (text, as a source system holds it) → the SourceRecord a source system's
adapter sends to identity's LinkSourceRecord.

The generator's records are messy on purpose (1980年5月3日, 男/女/M/F/1/2, a legacy 15-digit ID):
they are mapped exactly as identity's `resolve-csv --target` maps a CSV row, so a date or gender
that cannot be read is left out, as an adapter would leave it out. The service may still refuse
a field (an ID number with a bad check character): the sender then links the record without it.
"""

from __future__ import annotations

import dataclasses

from zhike.identity.v1 import party_pb2
from zhike_identity.domain.matching.features import RawRecord
from zhike_identity.remote import source_record_message
from zhike_identity_evaluation.dataset import InputRow


def source_record(row: InputRow) -> party_pb2.SourceRecord:
    return source_record_message(RawRecord(**dataclasses.asdict(row)))
