from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class LinkedSourceRecord:
    source_system: str
    source_record_id: str
    linked_at: dt.datetime


@dataclass(frozen=True)
class Profile:
    party_id: str
    source_records: tuple[LinkedSourceRecord, ...]
    created_at: dt.datetime
    updated_at: dt.datetime
    display_name: str = ""
