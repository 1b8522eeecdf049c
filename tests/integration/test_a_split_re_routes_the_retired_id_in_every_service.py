"""A steward merges Wang Wei's party into Liu Xiaoyan's by mistake, then splits his records out
again. A channel still holding his old (retired) party id must reach him, not her, in every
service: identity, the profile and offers (services as processes on one nats-server). When the
split parts the records the old id brought, no service answers for it any more."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from zhike.identity.v1 import identity_service_pb2 as identity_pb
from zhike.identity.v1 import identity_service_pb2_grpc as identity_grpc
from zhike.identity.v1 import party_pb2
from zhike.offers.v1 import offers_service_pb2 as offers_pb
from zhike.offers.v1 import offers_service_pb2_grpc as offers_grpc
from zhike.profile.v1 import profile_service_pb2 as profile_pb
from zhike.profile.v1 import profile_service_pb2_grpc as profile_grpc
from zhike_runtime.testing.services import authorised_channel, eventually

from .conftest import ServiceProcess, serving
from .journeys import link

WANG_WEI = {"full_name": "王伟", "phone": "13912345670", "email": "wang.wei@qq.com"}
LIU_XIAOYAN = {
    "full_name": "刘晓燕",
    "id_type": party_pb2.ID_TYPE_RESIDENT_ID,
    "id_number": "440306198505120028",
    "phone": "13671829305",
    "email": "xiaoyan.liu@163.com",
}


def key(system: str, record_id: str) -> party_pb2.SourceRecordKey:
    return party_pb2.SourceRecordKey(source_system=system, source_record_id=record_id)


def record(system: str, record_id: str, values: dict[str, Any]) -> party_pb2.SourceRecord:
    return party_pb2.SourceRecord(key=key(system, record_id), **values)


async def answered_by(call: Any) -> str:
    """The party id an answer names, or the status code's name when the call fails."""
    try:
        return str(await call)
    except grpc.aio.AioRpcError as error:
        return str(error.code().name)


class Channels:
    def __init__(self, identity: grpc.aio.Channel, profile: grpc.aio.Channel, offers: Any):
        self.identity = identity_grpc.IdentityServiceStub(identity)
        self.profile = profile_grpc.ProfileServiceStub(profile)
        self.offers = offers_grpc.OffersServiceStub(offers)

    async def leads_to(self, party_id: str) -> dict[str, str]:
        """Which party each service answers with for `party_id` (or the failure's code)."""

        async def identity() -> str:
            answer = await self.identity.GetParty(
                identity_pb.GetPartyRequest(party_id=party_id), timeout=5
            )
            return str(answer.party.party_id)

        async def profile() -> str:
            answer = await self.profile.GetProfile(
                profile_pb.GetProfileRequest(party_id=party_id), timeout=5
            )
            return str(answer.profile.party_id)

        async def offers() -> str:
            answer = await self.offers.GetContactPreferences(
                offers_pb.GetContactPreferencesRequest(party_id=party_id), timeout=5
            )
            return str(answer.preferences.party_id)

        return {
            "identity": await answered_by(identity()),
            "profile": await answered_by(profile()),
            "offers": await answered_by(offers()),
        }

    async def wait_until(self, party_id: str, expected: dict[str, str]) -> None:
        last: list[dict[str, str]] = [{}]

        async def every_service_agrees() -> bool:
            last[0] = await self.leads_to(party_id)
            return last[0] == expected

        try:
            await eventually(every_service_agrees, timeout=20)
        except AssertionError as error:
            raise AssertionError(f"{party_id} still leads to {last[0]}") from error


@pytest.fixture
async def merged_by_mistake(
    services: dict[str, ServiceProcess],
) -> Any:
    """(channels, her party, his retired party) once every service forwards his id to hers."""
    await serving(services["identity"], services["profile"], services["offers"])
    async with (
        authorised_channel(services["identity"].address) as identity,
        authorised_channel(services["profile"].address) as profile,
        authorised_channel(services["offers"].address) as offers,
    ):
        channels = Channels(identity, profile, offers)
        hers = (await link(identity, record("core", "A-1", LIU_XIAOYAN))).party_id
        his = (await link(identity, record("cards", "B-1", WANG_WEI))).party_id
        assert (await link(identity, record("loans", "B-2", WANG_WEI))).party_id == his
        assert his != hers
        await channels.identity.MergeParties(
            identity_pb.MergePartiesRequest(party_ids=[hers, his], reason="same customer?"),
            timeout=5,
        )
        await channels.wait_until(his, {"identity": hers, "profile": hers, "offers": hers})
        yield channels, hers, his


async def test_after_the_split_his_old_id_leads_to_his_new_party_in_every_service(
    merged_by_mistake: tuple[Channels, str, str],
) -> None:
    channels, hers, his = merged_by_mistake

    split = await channels.identity.SplitParty(
        identity_pb.SplitPartyRequest(
            party_id=hers,
            source_records=[key("cards", "B-1"), key("loans", "B-2")],
            reason="two customers: ID cards checked",
        ),
        timeout=5,
    )

    new = split.new_party_id
    await channels.wait_until(his, {"identity": new, "profile": new, "offers": new})


async def test_when_the_split_parts_his_records_no_service_answers_for_the_old_id(
    merged_by_mistake: tuple[Channels, str, str],
) -> None:
    channels, hers, his = merged_by_mistake

    await channels.identity.SplitParty(
        identity_pb.SplitPartyRequest(
            party_id=hers, source_records=[key("cards", "B-1")], reason="two customers"
        ),
        timeout=5,
    )

    not_found = "NOT_FOUND"
    await channels.wait_until(
        his, {"identity": not_found, "profile": not_found, "offers": not_found}
    )
