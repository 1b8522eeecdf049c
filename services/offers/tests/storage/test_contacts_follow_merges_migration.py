"""Migration offers_0004 on both databases: contacts recorded before the service moved them at
a merge become the survivor's, along a chain of merges; a live party's stay its own."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa

from zhike_offers.app import DEFINITION
from zhike_offers.storage.schema import contact_event, party
from zhike_runtime.db import Database
from zhike_runtime.migrations import (
    apply_migrations,
)
from zhike_runtime.testing.migrations import service_store_at

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
FIRST, MIDDLE, SURVIVOR, OTHER = (str(uuid.UUID(int=n)) for n in range(1, 5))


def contact(contact_id: str, party_id: str) -> dict[str, object]:
    return {
        "contact_id": contact_id,
        "party_id": party_id,
        "at": NOW,
        "offer_id": "usd_fx_wealth",
        "channel": "sms",
        "kind": "decline",
        "marketing": True,
        "decision_id": str(uuid.uuid4()),
    }


async def test_contacts_of_parties_merged_before_the_upgrade_become_the_survivors(
    database_url: str,
) -> None:
    assert DEFINITION.migrations is not None
    database = Database(database_url)
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(service_store_at, DEFINITION.migrations, "offers_0003")
            # FIRST was merged into MIDDLE, then MIDDLE into SURVIVOR.
            await connection.execute(
                sa.insert(party),
                [
                    {"party_id": FIRST, "merged_into": MIDDLE, "updated_at": NOW},
                    {"party_id": MIDDLE, "merged_into": SURVIVOR, "updated_at": NOW},
                    {"party_id": SURVIVOR, "merged_into": None, "updated_at": NOW},
                    {"party_id": OTHER, "merged_into": None, "updated_at": NOW},
                ],
            )
            await connection.execute(
                sa.insert(contact_event),
                [
                    contact("first", FIRST),
                    contact("middle", MIDDLE),
                    contact("survivor", SURVIVOR),
                    contact("other", OTHER),
                ],
            )

        await apply_migrations(database, DEFINITION.migrations)

        async with database.session() as session:
            rows = await session.execute(
                sa.select(contact_event.c.contact_id, contact_event.c.party_id)
            )
            owners = {contact_id: party_id for contact_id, party_id in rows}
    finally:
        await database.dispose()
    assert owners == {
        "first": SURVIVOR,
        "middle": SURVIVOR,
        "survivor": SURVIVOR,
        "other": OTHER,
    }
