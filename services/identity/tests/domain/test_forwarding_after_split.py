"""Where a retired id leads after the party it led to is split: it follows the records it
brought there, and leads nowhere when they part."""

from __future__ import annotations

from zhike_identity.domain.model import SourceRecordKey
from zhike_identity.domain.parties import forwarding_after_split

A1, A2, B1, B2 = (SourceRecordKey("core", n) for n in ("A-1", "A-2", "B-1", "B-2"))


def test_all_its_records_leaving_lead_it_to_the_new_party() -> None:
    assert forwarding_after_split({B1, B2}, {B1, B2}, "kept", "new") == "new"


def test_none_of_its_records_leaving_leaves_it_with_the_party_kept() -> None:
    assert forwarding_after_split({B1, B2}, {A2}, "kept", "new") == "kept"


def test_records_it_no_longer_has_there_keep_it_where_it_was() -> None:
    assert forwarding_after_split(set(), {A2}, "kept", "new") == "kept"


def test_its_records_parting_lead_it_nowhere() -> None:
    assert forwarding_after_split({B1, B2}, {B1, A1}, "kept", "new") is None
