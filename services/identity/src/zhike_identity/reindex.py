"""`zhike identity reindex`: rebuilds the candidate index from the stored records.

The index (`blocking_key`) holds each record's blocking keys as the code that wrote them defined
them. When a release changes the keys (2026-11-29: the birth date alone became the birth date
with a name part's initial, among others), records stored before it are indexed under the old
keys and new records no longer meet them. Run this once after such an upgrade; it is safe while
the service runs: each batch locks its records as a link does, reads them again, and replaces
their rows in one transaction.

The index is stored blinded under ZHIKE_BLIND_INDEX_KEY (storage/protection.py), so this is also
how that key is changed: start the service with the new key, then re-index (records not yet
re-indexed are not found as candidates or by look-ups until their batch is done).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from zhike_identity.domain.model import SourceRecordKey
from zhike_identity.domain.parties import record_lock_name
from zhike_identity.storage.bulk import index_keys
from zhike_identity.storage.protection import RecordProtection
from zhike_identity.storage.repository import SqlIdentityUnitOfWork
from zhike_identity.transport import codec
from zhike_runtime.crypto import FieldKeys
from zhike_runtime.db import Database

# Each record in a batch holds an advisory lock until the batch commits; PostgreSQL's lock table
# has room for max_locks_per_transaction (64) × max_connections entries, shared with the service.
DEFAULT_BATCH = 500


@dataclass(frozen=True)
class ReindexReport:
    records: int
    rows_before: int
    rows_after: int
    seconds: float


async def rebuild_index(
    database_url: str,
    *,
    keys: FieldKeys,
    batch_size: int = DEFAULT_BATCH,
) -> ReindexReport:
    started = time.perf_counter()
    database = Database(database_url)
    protection = RecordProtection(keys)
    records = rows_before = rows_after = 0
    after: SourceRecordKey | None = None
    try:
        while True:
            async with SqlIdentityUnitOfWork(
                database, codec.outgoing_event, lambda: None, protection
            ) as uow:
                batch = await uow.records.keys_after(after, batch_size)
                if not batch:
                    break
                await uow.lock([record_lock_name(k) for k in batch])
                # Read after the locks: a link that changed a record meanwhile has committed.
                stored = await uow.records.get_many(batch)
                index = {s.key: index_keys(s.record) for s in stored}
                rows_before += await uow.records.replace_blocking_keys(index)
                await uow.commit()
            records += len(index)
            rows_after += sum(len(k) for k in index.values())
            after = batch[-1]
    finally:
        await database.dispose()
    return ReindexReport(records, rows_before, rows_after, time.perf_counter() - started)
