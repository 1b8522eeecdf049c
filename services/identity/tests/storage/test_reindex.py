"""`zhike identity reindex`: a store indexed under old blocking keys is indexed anew."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from zhike_identity.domain.matching.features import RawRecord
from zhike_identity.domain.matching.resolver import resolve
from zhike_identity.reindex import rebuild_index
from zhike_identity.storage.bulk import index_keys, service_record, write_store
from zhike_identity.storage.schema import blocking_key, source_record
from zhike_runtime.db import Database
from zhike_runtime.testing.services import process_environment

from .test_bulk import (
    KEYS,
    PROTECTION,
    VERSION,
    as_input,
    generated,
    identity_service,
    stored_person_with_a_resident_id,
)


async def index_rows(database: Database) -> set[tuple[str, str, str]]:
    async with database.session() as session:
        rows = await session.execute(
            sa.select(
                blocking_key.c.key, blocking_key.c.source_system, blocking_key.c.source_record_id
            )
        )
        return {(r[0], r[1], r[2]) for r in rows}


def expected_rows(records: list[RawRecord]) -> set[tuple[str, str, str]]:
    """The index the current code computes from the values the store holds, blinded."""
    today = dt.date.today()
    return {
        (k, r.source, r.source_id)
        for r in records
        for k in PROTECTION.index_keys(index_keys(service_record(r, today).record))
    }


async def test_reindex_rebuilds_a_stale_index_and_new_records_meet_the_stored_again(
    database_url: str,
) -> None:
    records = generated()
    resolution = resolve(records)
    await write_store(database_url, records, resolution, keys=KEYS, model_version=VERSION)
    database = Database(database_url)
    try:
        expected = expected_rows(records)
        assert await index_rows(database) == expected
        # An index written by an older release: other keys entirely (here, one per record).
        async with database.session() as session, session.begin():
            await session.execute(sa.delete(blocking_key))
            await session.execute(
                sa.insert(blocking_key).from_select(
                    ["key", "source_system", "source_record_id"],
                    sa.select(
                        sa.literal("old:key"),
                        source_record.c.source_system,
                        source_record.c.source_record_id,
                    ),
                )
            )

        report = await rebuild_index(database_url, keys=KEYS, batch_size=37)  # several batches

        assert report.records == len(records)
        assert report.rows_before == len(records)
        assert report.rows_after == len(expected)
        assert await index_rows(database) == expected

        # And the service finds a stored person again.
        index, known = stored_person_with_a_resident_id(records)
        service = identity_service(database)
        outcome = await service.linking.link_source_record(
            as_input(known, "branch_wealth", "W-NEW-2")
        )
        assert outcome.party_id == resolution.party_ids[index]
    finally:
        await database.dispose()


def test_reindex_command_reports_what_it_did(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'identity.db'}"
    records = generated()[:40]
    asyncio.run(write_store(url, records, resolve(records), keys=KEYS, model_version=VERSION))
    zhike = Path(sys.executable).parent / "zhike"
    # The service's field keys, as a migration job or an operator's shell has them.
    environment = os.environ | process_environment()
    done = subprocess.run(
        [str(zhike), "identity", "reindex", "--store", url, "--batch-size", "7"],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    )
    assert f"re-indexed {len(records)} records" in done.stderr
    refused = subprocess.run(
        [str(zhike), "identity", "reindex", "--store", url, "--batch-size", "0"],
        capture_output=True,
        text=True,
        check=False,
        env=environment,
    )
    assert refused.returncode == 2
    assert "--batch-size" in refused.stderr
