"""The golden record: per attribute, the surviving value and where it came from.

Name from a record with a valid resident ID number over one without (a verified identity beats a
call-centre note), most recent first among equals; birth date and sex from a valid resident ID
number when there is one; all phones and e-mails, most recent first; the most recent address.
Values are as stored: the API masks them for callers who may not see them (transport/codec.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from zhike_identity.domain.matching.features import RecordFeatures
from zhike_identity.domain.model import GoldenRecord, GoldenValue, StoredRecord


def golden_record(records: Sequence[tuple[StoredRecord, RecordFeatures]]) -> GoldenRecord:
    recent = sorted(records, key=lambda item: item[0].updated_at, reverse=True)
    verified = [item for item in recent if item[1].resident_id is not None]

    def pick_name() -> GoldenValue | None:
        for group, basis in (
            (verified, "record with a valid resident ID"),
            (recent, "most recent"),
        ):
            for stored, features in group:
                if features.name is not None:
                    return GoldenValue(features.name.display, stored.key, basis)
        return None

    birth = gender = id_number = None
    if verified:
        stored, features = verified[0]
        basis = "valid resident ID"
        if features.birth_date is not None:
            birth = GoldenValue(features.birth_date.isoformat(), stored.key, basis)
        if features.gender is not None:
            gender = GoldenValue(features.gender.name, stored.key, basis)
        if features.document is not None:
            id_number = GoldenValue(features.document.number, stored.key, basis)
    else:
        for stored, features in recent:
            if birth is None and features.birth_date is not None:
                birth = GoldenValue(features.birth_date.isoformat(), stored.key, "most recent")
            if gender is None and features.gender is not None:
                gender = GoldenValue(features.gender.name, stored.key, "most recent")
            if id_number is None and features.document is not None:
                id_number = GoldenValue(features.document.number, stored.key, "most recent")
    phones: list[GoldenValue] = []
    emails: list[GoldenValue] = []
    seen: set[str] = set()
    address = None
    for stored, features in recent:
        if features.phone is not None and features.phone.e164 not in seen:
            seen.add(features.phone.e164)
            phones.append(GoldenValue(features.phone.e164, stored.key, "most recent first"))
        if features.email is not None and features.email not in seen:
            seen.add(features.email)
            emails.append(GoldenValue(features.email, stored.key, "most recent first"))
        if address is None and features.address is not None:
            address = GoldenValue(stored.record.address, stored.key, "most recent")
    return GoldenRecord(
        full_name=pick_name(),
        birth_date=birth,
        gender=gender,
        id_number=id_number,
        phones=tuple(phones),
        emails=tuple(emails),
        address=address,
    )
