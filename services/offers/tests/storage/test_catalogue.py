"""The stored catalogue (SQLite and PostgreSQL): the shipped defaults stored once and never over
an admin's version, versioned saves, conflicts, listing, and every replica seeing a save."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from zhike_offers.domain.catalogue import CatalogueError
from zhike_offers.storage import schema
from zhike_runtime.db import Database
from zhike_runtime.errors import ConcurrentUpdate, FailedPrecondition, NotFound

from ..domain.builders import document
from ..offers_harness import Harness, default_catalogue

DEFAULT_IDS = [offer.offer_id for offer in default_catalogue().offers]


@pytest.fixture
async def harness(database_url: str) -> AsyncIterator[Harness]:
    started = await Harness.start(database_url)
    yield started
    await started.close()


def admin_document(**fields: Any) -> dict[str, Any]:
    """As the transport sends it: no version, no retired."""
    found = document("app_banner", placements=["home_banner"], **fields)
    del found["version"]
    return found


async def test_the_defaults_are_stored_once_and_never_over_an_admins_newer_version(
    database_url: str,
) -> None:
    first = await Harness.start(database_url)
    try:
        catalogue = await first.catalogues.get()
        assert [offer.offer_id for offer in catalogue.offers] == DEFAULT_IDS
        fx = (await first.admin.get("usd_fx_wealth")).offer.to_document()
        fx["levers"] = "2"
        await first.admin.update(fx, expected_version=1)
        stored_versions = await first.count(schema.offer_version)
    finally:
        await first.close()

    # A restart (or another replica) loads the same files again.
    second = Harness(Database(database_url), default_catalogue())
    try:
        catalogue = await second.catalogues.get()
        offer = catalogue.offer("usd_fx_wealth")
        assert offer is not None
        assert offer.version == 2
        assert str(offer.levers) == "2"
        assert await second.count(schema.offer_version) == stored_versions
    finally:
        await second.close()


async def test_a_saved_offer_gets_the_next_version_and_the_old_one_stays_readable(
    harness: Harness,
) -> None:
    created = await harness.admin.create(admin_document())
    updated = await harness.admin.update(admin_document(value="250"), expected_version=1)

    assert created.offer.version == 1
    assert updated.offer.version == 2
    assert str((await harness.admin.get("app_banner")).offer.value) == "250"
    assert str((await harness.admin.get("app_banner", 1)).offer.value) == "100"
    live = (await harness.catalogues.get()).offer("app_banner")
    assert live is not None
    assert live.version == 2


async def test_a_stale_expected_version_changes_nothing(harness: Harness) -> None:
    await harness.admin.create(admin_document())
    await harness.admin.update(admin_document(value="250"), expected_version=1)

    with pytest.raises(ConcurrentUpdate):
        await harness.admin.update(admin_document(value="999"), expected_version=1)
    with pytest.raises(ConcurrentUpdate):
        await harness.admin.retire("app_banner", 1, "")

    assert (await harness.admin.get("app_banner")).offer.version == 2


async def test_creating_an_existing_offer_or_saving_an_unknown_one_is_refused(
    harness: Harness,
) -> None:
    await harness.admin.create(admin_document())

    with pytest.raises(FailedPrecondition):
        await harness.admin.create(admin_document())
    with pytest.raises(NotFound):
        await harness.admin.update(document("no_such_offer"), expected_version=1)
    with pytest.raises(NotFound):
        await harness.admin.get("no_such_offer")


async def test_an_offer_with_a_bad_rule_is_refused_naming_the_field_and_nothing_is_stored(
    harness: Harness,
) -> None:
    before = await harness.count(schema.offer_version)

    with pytest.raises(CatalogueError) as caught:
        await harness.admin.create(admin_document(eligibility=['assets["USD"] >= 5000']))

    assert [v.field for v in caught.value.violations] == ["eligibility[0]"]
    assert await harness.count(schema.offer_version) == before


async def test_a_retired_offer_is_listed_only_when_asked_and_cannot_be_updated(
    harness: Harness,
) -> None:
    await harness.admin.retire("time_deposit_promo", 1, "rates changed")

    live = await harness.admin.list(50, "", include_retired=False)
    everything = await harness.admin.list(50, "", include_retired=True)
    assert "time_deposit_promo" not in [item.offer.offer_id for item in live.offers]
    assert "time_deposit_promo" in [item.offer.offer_id for item in everything.offers]
    assert live.catalogue_version == (await harness.catalogues.get()).version
    promo = (await harness.admin.get("time_deposit_promo", 1)).offer.to_document()
    with pytest.raises(FailedPrecondition):
        await harness.admin.update(promo, expected_version=2)


async def test_listing_pages_through_every_offer_in_id_order(harness: Harness) -> None:
    seen: list[str] = []
    token = ""
    while True:
        page = await harness.admin.list(3, token, include_retired=True)
        seen += [item.offer.offer_id for item in page.offers]
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(DEFAULT_IDS)


async def test_another_replica_sees_a_save_at_its_next_refresh(database_url: str) -> None:
    one = await Harness.start(database_url)
    other = Harness(Database(database_url), default_catalogue())
    try:
        await other.catalogues.get()
        await one.admin.create(admin_document())

        assert (await other.catalogues.get()).offer("app_banner") is None  # until it refreshes
        assert await other.catalogues.refresh()
        assert (await other.catalogues.get()).offer("app_banner") is not None
        assert not await other.catalogues.refresh()  # nothing new: nothing compiled
    finally:
        await one.close()
        await other.close()
