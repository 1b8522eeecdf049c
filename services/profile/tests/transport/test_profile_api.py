"""The profile's gRPC API in-process with identity, on a real nats-server: facts ingested through
IngestSourceEvents reach the profile of the party identity linked their record to, and every
read (GetProfile, ListHoldings, ListInteractions, SearchProfiles) shows them, masked unless the
caller may read personal data."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.type import date_pb2

from zhike.identity.v1 import identity_service_pb2 as identity_pb
from zhike.identity.v1 import identity_service_pb2_grpc, party_pb2
from zhike.profile.v1 import events_pb2, profile_pb2, profile_service_pb2, profile_service_pb2_grpc
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_identity.app import DEFINITION as IDENTITY
from zhike_identity.settings import IdentitySettings
from zhike_profile.app import DEFINITION as PROFILE
from zhike_profile.settings import ProfileSettings
from zhike_runtime.app import RunningService
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import (
    authorised_channel,
    eventually,
    running_service,
    wait_serving,
)

from ..source_facts import (
    T0,
    account_opened,
    balance_changed,
    card_issued,
    interaction,
    salary_paid,
    source_event,
)
from ..streams import declare_notifications_stream_at

if TYPE_CHECKING:
    from zhike.identity.v1.identity_service_pb2_grpc import IdentityServiceAsyncStub
    from zhike.profile.v1.profile_service_pb2_grpc import ProfileServiceAsyncStub

ACCOUNT = "6222-0001-0001"
TELLER = ["branch_teller"]  # may read account ids in full (audited)
AGENT = ["call_centre_agent"]  # sees them masked


@dataclasses.dataclass
class Stack:
    identity: IdentityServiceAsyncStub
    profile_service: RunningService[ProfileSettings]
    identity_service: RunningService[IdentitySettings]
    channel: Callable[[list[str]], grpc.aio.Channel]

    def profile(self, roles: list[str] | None = None) -> ProfileServiceAsyncStub:
        channel = self.channel(roles or ["marketing_operations", "source_system", *TELLER])
        return cast("ProfileServiceAsyncStub", profile_service_pb2_grpc.ProfileServiceStub(channel))


@pytest.fixture
async def stack(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Stack]:
    opened: list[grpc.aio.Channel] = []
    async with running_service(
        IDENTITY,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'identity.db'}",
        nats_url=nats_server.url,
    ) as identity:
        await wait_serving(identity.grpc_port)
        await declare_notifications_stream_at(nats_server.url)
        async with running_service(
            PROFILE,
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'profile.db'}",
            nats_url=nats_server.url,
        ) as profile:
            await wait_serving(profile.grpc_port)

            def channel(roles: list[str]) -> grpc.aio.Channel:
                opened.append(authorised_channel(f"127.0.0.1:{profile.grpc_port}", roles=roles))
                return opened[-1]

            async with authorised_channel(f"127.0.0.1:{identity.grpc_port}") as identity_channel:
                yield Stack(
                    cast(
                        "IdentityServiceAsyncStub",
                        identity_service_pb2_grpc.IdentityServiceStub(identity_channel),
                    ),
                    profile,
                    identity,
                    channel,
                )
            for each in opened:
                await each.close()


async def link(stack: Stack, system: str, record: str, name: str = "刘建军") -> str:
    response = await stack.identity.LinkSourceRecord(
        identity_pb.LinkSourceRecordRequest(
            source_record=party_pb2.SourceRecord(
                key=party_pb2.SourceRecordKey(source_system=system, source_record_id=record),
                full_name=name,
                phone="13910001000",
            )
        ),
        timeout=5,
    )
    return str(response.party_id)


async def ingest(stack: Stack, *events: source_pb.SourceEvent) -> list[tuple[str, bool]]:
    response = await stack.profile(["source_system"]).IngestSourceEvents(
        profile_service_pb2.IngestSourceEventsRequest(events=list(events)), timeout=10
    )
    return [(r.event_id, r.duplicate) for r in response.receipts]


async def wait_until(check: Callable[[], Awaitable[bool]]) -> None:
    await eventually(check, timeout=10)


async def get_profile(stack: Stack, party_id: str, roles: list[str] | None = None) -> Any:
    response = await stack.profile(roles).GetProfile(
        profile_service_pb2.GetProfileRequest(party_id=party_id), timeout=5
    )
    return response.profile


async def balances_of(stack: Stack, party_id: str) -> list[tuple[str, int]]:
    """The party's assets per currency; none while the profile does not exist yet."""
    try:
        found = await get_profile(stack, party_id)
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return []
        raise
    return [(b.currency_code, b.assets_minor_units) for b in found.balances]


async def profile_changes(stack: Stack) -> list[events_pb2.ProfileChanged]:
    js = stack.profile_service.bus.js
    count = (await js.stream_info("ZHIKE_PROFILE")).state.messages
    return [
        events_pb2.ProfileChanged.FromString(
            (await js.get_msg("ZHIKE_PROFILE", seq=seq)).data or b""
        )
        for seq in range(1, count + 1)
    ]


async def a_customer_with_usd(stack: Stack) -> str:
    party_id = await link(stack, "core", "C-1")
    await ingest(
        stack,
        source_event("core", "C-1", "o-1", 1, **account_opened(ACCOUNT, "USD")),
        source_event("core", "C-1", "b-1", 2, **balance_changed(ACCOUNT, "USD", 600000)),
    )

    async def usd_shown() -> bool:
        return await balances_of(stack, party_id) == [("USD", 600000)]

    await wait_until(usd_shown)
    return party_id


async def test_ingested_facts_show_in_the_linked_partys_profile_and_are_told(
    stack: Stack,
) -> None:
    party_id = await a_customer_with_usd(stack)

    found = await get_profile(stack, party_id)
    (holding,) = found.holdings
    assert (holding.product_line, holding.balance.currency_code) == (
        source_pb.PRODUCT_LINE_CURRENT_ACCOUNT,
        "USD",
    )
    assert found.tier.name
    assert found.tier.reason
    assert "usd_holder" in [s.name for s in found.segments]
    assert found.totals.assets.currency_code == "CNY"
    assert found.totals.assets.minor_units > 0

    async def told() -> bool:
        facts = [f for c in await profile_changes(stack) if c.party_id == party_id for f in c.facts]
        return any(
            f.HasField("balance_changed") and f.balance_changed.after_minor_units == 600000
            for f in facts
        )

    await wait_until(told)


async def test_a_salaried_customer_whose_golden_record_makes_him_30_is_a_young_professional(
    stack: Stack,
) -> None:
    # 30 (31 from the first of January in Shanghai): young_professional is aged 25 to 35.
    born = date_pb2.Date(year=dt.date.today().year - 30, month=1, day=1)
    party_id = (
        await stack.identity.LinkSourceRecord(
            identity_pb.LinkSourceRecordRequest(
                source_record=party_pb2.SourceRecord(
                    key=party_pb2.SourceRecordKey(source_system="core", source_record_id="Y-1"),
                    full_name="陈思远",
                    phone="13910002000",
                    birth_date=born,
                )
            ),
            timeout=5,
        )
    ).party_id
    now = dt.datetime.now(dt.UTC)
    # Salary in 2 of the last 3 months: this one, and 35 days ago.
    await ingest(
        stack,
        source_event("core", "Y-1", "o-1", 1, now - dt.timedelta(days=60), **account_opened("Y")),
        source_event("core", "Y-1", "s-1", 2, now - dt.timedelta(days=35), **salary_paid("Y")),
        source_event("core", "Y-1", "s-2", 3, now - dt.timedelta(minutes=1), **salary_paid("Y")),
    )

    async def told() -> bool:
        return any(
            f.segment_entered.segment == "young_professional"
            for c in await profile_changes(stack)
            if c.party_id == party_id
            for f in c.facts
        )

    await wait_until(told)
    found = await get_profile(stack, party_id)
    assert "young_professional" in [s.name for s in found.segments]


async def test_account_ids_are_masked_unless_the_caller_may_read_them(stack: Stack) -> None:
    party_id = await a_customer_with_usd(stack)

    masked = await stack.profile(AGENT).ListHoldings(
        profile_service_pb2.ListHoldingsRequest(party_id=party_id), timeout=5
    )
    shown = await stack.profile(TELLER).ListHoldings(
        profile_service_pb2.ListHoldingsRequest(party_id=party_id), timeout=5
    )
    profile_for_agent = await get_profile(stack, party_id, AGENT)

    assert [h.account_id for h in masked.holdings] == ["****0001"]
    assert [h.account_id for h in profile_for_agent.holdings] == ["****0001"]
    assert [h.account_id for h in shown.holdings] == [ACCOUNT]
    audited = [
        (entry.roles, entry.fields)
        for entry in await stack.profile_service.audit.read(party_id=party_id)
        if entry.method.endswith("/ListHoldings")
    ]
    assert audited == [(tuple(TELLER), ("account_id",))]  # the unmasked read only


async def test_a_profile_is_found_by_any_source_record_with_only_the_fields_asked_for(
    stack: Stack,
) -> None:
    party_id = await a_customer_with_usd(stack)

    response = await stack.profile().GetProfile(
        profile_service_pb2.GetProfileRequest(
            source_record=party_pb2.SourceRecordKey(source_system="core", source_record_id="C-1"),
            read_mask=FieldMask(paths=["party_id", "balances"]),
        ),
        timeout=5,
    )

    assert response.profile == profile_pb2.Profile(
        party_id=party_id,
        balances=[profile_pb2.CurrencyBalance(currency_code="USD", assets_minor_units=600000)],
    )


async def test_facts_of_a_record_not_yet_linked_wait_for_its_link(stack: Stack) -> None:
    await ingest(
        stack,
        source_event("cards", "K-9", "c-1", 1, **card_issued("CARD-9")),
        source_event("cards", "K-9", "c-2", 2, **balance_changed("CARD-9", "CNY", 120000)),
    )
    by_key = profile_service_pb2.GetProfileRequest(
        source_record=party_pb2.SourceRecordKey(source_system="cards", source_record_id="K-9")
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.profile().GetProfile(by_key, timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    party_id = await link(stack, "cards", "K-9")

    async def card_shown() -> bool:
        if await balances_of(stack, party_id) != [("CNY", 0)]:
            return False  # a credit card's balance is owed: no assets, once the link is in
        found = await get_profile(stack, party_id)
        return [(h.account_id, h.card_tier) for h in found.holdings] == [
            ("CARD-9", source_pb.CARD_TIER_GOLD)
        ]

    await wait_until(card_shown)


async def test_interactions_are_listed_most_recent_first_page_by_page(stack: Stack) -> None:
    party_id = await link(stack, "branch", "V-1")
    kinds = [
        source_pb.INTERACTION_KIND_BRANCH_VISIT,
        source_pb.INTERACTION_KIND_APP_LOGIN,
        source_pb.INTERACTION_KIND_ATM_USE,
        source_pb.INTERACTION_KIND_CALL_CENTRE_CALL,
        source_pb.INTERACTION_KIND_BRANCH_VISIT,
    ]
    await ingest(
        stack,
        *(
            source_event(
                "branch",
                "V-1",
                f"i-{n}",
                n + 1,
                at=T0 + dt.timedelta(hours=n),
                **interaction(kind, branch="0101"),
            )
            for n, kind in enumerate(kinds)
        ),
    )
    api = stack.profile()

    async def page(token: str) -> Any:
        return await api.ListInteractions(
            profile_service_pb2.ListInteractionsRequest(
                party_id=party_id, page_size=2, page_token=token
            ),
            timeout=5,
        )

    async def every_page() -> list[int]:
        seen: list[int] = []
        token = ""
        while True:
            response = await page(token)
            seen.extend(i.kind for i in response.interactions)
            assert len(response.interactions) <= 2
            token = response.next_page_token
            if not token:
                return seen

    async def all_five() -> bool:
        try:
            return len(await every_page()) == len(kinds)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return False  # the link is not in yet
            raise

    await wait_until(all_five)
    seen = await every_page()
    assert seen == list(reversed(kinds))


async def test_profiles_are_searched_by_segment_and_total_assets(stack: Stack) -> None:
    party_id = await a_customer_with_usd(stack)
    other = await link(stack, "core", "C-2", name="王伟")
    await ingest(
        stack,
        source_event("core", "C-2", "o-2", 1, **account_opened("ACC-2", "CNY")),
        source_event("core", "C-2", "b-2", 2, **balance_changed("ACC-2", "CNY", 100)),
    )
    api = stack.profile(["marketing_operations"])

    async def search(**criteria: Any) -> list[str]:
        response = await api.SearchProfiles(
            profile_service_pb2.SearchProfilesRequest(**criteria), timeout=5
        )
        return [p.party_id for p in response.profiles]

    async def both_indexed() -> bool:
        return set(await search(min_total_assets_minor_units=0)) == {party_id, other}

    await wait_until(both_indexed)
    assert await search(segment="usd_holder") == [party_id]
    assert await search(min_total_assets_minor_units=1_000_000) == [party_id]
    assert await search(max_total_assets_minor_units=1_000_000) == [other]
    first = await api.SearchProfiles(
        profile_service_pb2.SearchProfilesRequest(min_total_assets_minor_units=0, page_size=1),
        timeout=5,
    )
    second = await api.SearchProfiles(
        profile_service_pb2.SearchProfilesRequest(
            min_total_assets_minor_units=0, page_size=1, page_token=first.next_page_token
        ),
        timeout=5,
    )
    assert {first.profiles[0].party_id, second.profiles[0].party_id} == {party_id, other}
    assert second.next_page_token == ""


async def test_a_batch_sent_twice_is_applied_once(stack: Stack) -> None:
    party_id = await link(stack, "core", "D-1")
    batch = [
        source_event("core", "D-1", "o-1", 1, **account_opened("ACC-D", "HKD")),
        source_event("core", "D-1", "b-1", 2, **balance_changed("ACC-D", "HKD", 5000)),
    ]

    first = await ingest(stack, *batch)
    again = await ingest(stack, *batch)

    assert first == [("o-1", False), ("b-1", False)]
    assert again == [("o-1", True), ("b-1", True)]

    async def shown() -> bool:
        return await balances_of(stack, party_id) == [("HKD", 5000)]

    await wait_until(shown)
