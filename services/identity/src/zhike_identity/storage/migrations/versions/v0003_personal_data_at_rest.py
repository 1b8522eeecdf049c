"""Personal data at rest: ID numbers, phones and e-mails sealed; the candidate index blinded.

Existing rows are converted in place: each source record's `id_number`, `phone` and `email`
sealed under the active data key, bound to its column and record; each `blocking_key` row
replaced by its blind form (the two-letter prefix, then the keyed hash of the whole plain key),
into a new table that then takes the old one's name. The forms are those of
storage/protection.py as of this revision, written out here so that this migration keeps doing
what it did whatever that module becomes.

A store holding rows needs the field keys (the service's ZHIKE_DATA_KEYS, ZHIKE_DATA_KEY_ID,
ZHIKE_BLIND_INDEX_KEY; `apply_migrations` passes them); an empty store migrates without them.
One transaction: a failure leaves the store as it was. Large stores take a while (tens of
seconds per million index rows); run it in the deployment's migration job.

Revision ID: identity_0003
Revises: identity_0002
Create Date: 2026-12-01
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from zhike_runtime.crypto import Blinder, KeyRing
from zhike_runtime.migrations import migration_field_keys

revision = "identity_0003"
down_revision = "identity_0002"
branch_labels = None
depends_on = None

_SEALED = ("id_number", "phone", "email")
_INDEX_PURPOSE = "identity.blocking_key"
_PREFIX_LENGTH = 3
_BATCH = 5000

_record = sa.table(
    "source_record", *(sa.column(c) for c in ("source_system", "source_record_id", *_SEALED))
)
_old_index = sa.table(
    "blocking_key", *(sa.column(c) for c in ("key", "source_system", "source_record_id"))
)
_NEW_INDEX = "blocking_key_blind"


def upgrade() -> None:
    with op.batch_alter_table("source_record") as batch:
        for column in _SEALED:
            # Tokens are longer than the values they seal.
            batch.alter_column(column, type_=sa.Text(), existing_nullable=False)
    bind = op.get_bind()
    holds_records = bind.scalar(sa.select(sa.literal(1)).select_from(_record).limit(1))
    holds_keys = bind.scalar(sa.select(sa.literal(1)).select_from(_old_index).limit(1))
    if not holds_records and not holds_keys:
        return
    keys = migration_field_keys()
    if keys is None:
        raise RuntimeError(
            "the identity store holds personal data in plain text: sealing it needs the field "
            "keys (ZHIKE_DATA_KEYS, ZHIKE_DATA_KEY_ID, ZHIKE_BLIND_INDEX_KEY)"
        )
    _seal_records(bind, keys.ring)
    _blind_index(bind, keys.blind_index.purpose(_INDEX_PURPOSE))


def _seal_records(bind: sa.Connection, ring: KeyRing) -> None:
    key = (_record.c.source_system, _record.c.source_record_id)
    update = (
        sa.update(_record)
        .where(
            _record.c.source_system == sa.bindparam("k_system"),
            _record.c.source_record_id == sa.bindparam("k_record"),
        )
        .values({c: sa.bindparam(f"v_{c}") for c in _SEALED})
    )
    after: tuple[str, str] | None = None
    while True:
        query = sa.select(*key, *(_record.c[c] for c in _SEALED))
        if after is not None:
            query = query.where(
                sa.tuple_(*key) > sa.tuple_(sa.literal(after[0]), sa.literal(after[1]))
            )
        rows = bind.execute(query.order_by(*key).limit(_BATCH)).all()
        if not rows:
            return
        changes: list[dict[str, Any]] = []
        for system, record_id, *values in rows:
            place = (system, record_id)
            change = {"k_system": system, "k_record": record_id}
            for column, value in zip(_SEALED, values, strict=True):
                change[f"v_{column}"] = ring.encrypt(value or "", f"source_record.{column}", place)
            changes.append(change)
        bind.execute(update, changes)
        after = (rows[-1][0], rows[-1][1])


def _blind_index(bind: sa.Connection, blind: Blinder) -> None:
    new_index = op.create_table(
        _NEW_INDEX,
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("source_system", sa.String(64), primary_key=True),
        sa.Column("source_record_id", sa.String(128), primary_key=True),
    )
    assert new_index is not None
    c = _old_index.c
    order = (c.key, c.source_system, c.source_record_id)
    after: tuple[str, str, str] | None = None
    while True:
        query = sa.select(*order)
        if after is not None:
            query = query.where(sa.tuple_(*order) > sa.tuple_(*(sa.literal(v) for v in after)))
        rows = bind.execute(query.order_by(*order).limit(_BATCH)).all()
        if not rows:
            break
        bind.execute(
            new_index.insert(),
            [
                {
                    "key": key[:_PREFIX_LENGTH] + blind(key),
                    "source_system": system,
                    "source_record_id": record_id,
                }
                for key, system, record_id in rows
            ],
        )
        after = (rows[-1][0], rows[-1][1], rows[-1][2])
    op.drop_index("ix_blocking_key_record", table_name="blocking_key")
    op.drop_table("blocking_key")
    op.rename_table(_NEW_INDEX, "blocking_key")
    if bind.dialect.name == "postgresql":
        op.execute(f"ALTER INDEX {_NEW_INDEX}_pkey RENAME TO blocking_key_pkey")
    op.create_index("ix_blocking_key_record", "blocking_key", ["source_system", "source_record_id"])


def downgrade() -> None:
    # One-way on purpose: a downgrade would write every identifier back in plain text. To go
    # back, restore the backup taken before the upgrade (docs/operations.md, "Key rotation").
    raise RuntimeError(
        "identity_0003 cannot be downgraded: it would store personal data in plain text again; "
        "restore the backup taken before the upgrade instead"
    )
