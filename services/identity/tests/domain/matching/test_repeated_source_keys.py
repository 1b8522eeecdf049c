"""A source key given twice is one record, the last row given (as the store keeps it): earlier
rows of the key take no part in matching, in resolution or in training."""

from __future__ import annotations

import dataclasses
import datetime as dt

from zhike_identity.domain.matching import resolver
from zhike_identity.domain.matching.features import RawRecord
from zhike_identity_evaluation import generator

TODAY = dt.date(2026, 1, 1)
ZHANG_SAN = {
    "full_name": "张三",
    "phone": "13812345678",
    "email": "zhangsan@163.com",
    "birth_date": "1949-12-31",
}
LI_SI = {
    "full_name": "李四",
    "phone": "13987654321",
    "email": "lisi@qq.com",
    "birth_date": "1980-01-01",
}


def core_1_reused() -> list[RawRecord]:
    """core/1 first held 张三 (whom branch/5 also holds), then was reused for 李四 (cards/9)."""
    return [
        RawRecord("core", "1", **ZHANG_SAN),
        RawRecord("branch", "5", **ZHANG_SAN),
        RawRecord("cards", "9", **LI_SI),
        RawRecord("core", "1", **LI_SI),
    ]


def test_an_earlier_row_of_a_repeated_source_key_links_no_one() -> None:
    party_ids = resolver.resolve(core_1_reused(), estimate_model=False, today=TODAY).party_ids

    assert party_ids[1] != party_ids[2]  # 张三 at the branch, 李四 at cards: two people


def test_every_row_of_a_repeated_source_key_gets_the_party_of_the_keys_last_row() -> None:
    party_ids = resolver.resolve(core_1_reused(), estimate_model=False, today=TODAY).party_ids

    assert party_ids[0] == party_ids[3] == party_ids[2]


def test_the_resolution_names_each_dropped_row_with_the_keys_last_row() -> None:
    resolution = resolver.resolve(core_1_reused(), estimate_model=False, today=TODAY)

    assert resolution.superseded == {0: 3}


def test_source_ids_that_differ_only_in_unicode_form_are_one_key_as_the_store_holds_them() -> None:
    composed = RawRecord("crm", "caf\u00e9-1", full_name="张三")
    decomposed = RawRecord("crm", "cafe\u0301-1", full_name="李四")

    assert resolver.superseded([composed, decomposed]) == {0: 1}


def test_training_reads_a_repeated_source_key_as_its_last_row_only() -> None:
    rows, _truth = generator.generate(200, 3)
    records = [RawRecord(*dataclasses.astuple(row)) for row in rows]
    # Sixty keys that first held another person's values: a reused key.
    earlier = [
        dataclasses.replace(records[i + 7], source=r.source, source_id=r.source_id)
        for i, r in enumerate(records[:60])
    ]

    with_earlier_rows = resolver.train(earlier + records, version="v", today=TODAY)

    assert with_earlier_rows == resolver.train(records, version="v", today=TODAY)
