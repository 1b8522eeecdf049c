from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp

from zhike.profile.v1 import profile_pb2
from zhike_profile.domain.model import Profile


def _timestamp(value: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def profile_message(profile: Profile) -> profile_pb2.Profile:
    return profile_pb2.Profile(
        party_id=profile.party_id,
        source_records=[
            profile_pb2.LinkedSourceRecord(
                source_system=r.source_system,
                source_record_id=r.source_record_id,
                link_time=_timestamp(r.linked_at),
            )
            for r in profile.source_records
        ],
        create_time=_timestamp(profile.created_at),
        update_time=_timestamp(profile.updated_at),
        display_name=profile.display_name,
    )
