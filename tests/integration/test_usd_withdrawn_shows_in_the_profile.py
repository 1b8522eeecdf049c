"""The story that started the platform: a customer moved all his USD out, and for weeks kept
getting a USD FX product by SMS. Now core deposits tells the profile (IngestSourceEvents) that
his USD 6,000.00 went to 0.00; his profile shows USD 0 and a ProfileChanged naming the USD
balance change is on the profile's stream, for offers and notifications to act on. Identity and
profile run as processes, as `make run` starts them.

How soon (the issue's "within one second") is a speed, so `make bench` measures it rather than a
wall clock here: `benchmarks.profile`, "source event → ProfileChanged" (p50/p99)."""

from __future__ import annotations

import asyncio

import grpc

from zhike.profile.v1 import events_pb2
from zhike.profile.v1 import profile_service_pb2 as profile_pb
from zhike.profile.v1 import profile_service_pb2_grpc as profile_grpc
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import answer_or_none, authorised_channel, eventually

from .conftest import ServiceProcess, serving
from .journeys import link
from .source_systems import (
    fx_customer_record,
    fx_usd_account,
    ingest,
    profile_changes,
    usd_balance,
)


async def usd_shown(channel: grpc.aio.Channel, party_id: str) -> int | None:
    stub = profile_grpc.ProfileServiceStub(channel)
    response = await answer_or_none(
        stub.GetProfile(profile_pb.GetProfileRequest(party_id=party_id), timeout=5)
    )
    if response is None:
        return None
    usd = [b.assets_minor_units for b in response.profile.balances if b.currency_code == "USD"]
    return usd[0] if usd else None


def usd_change(changed: events_pb2.ProfileChanged) -> tuple[int, int] | None:
    for item in changed.facts:
        if item.HasField("balance_changed") and item.balance_changed.currency_code == "USD":
            return (item.balance_changed.before_minor_units, item.balance_changed.after_minor_units)
    return None


async def test_usd_withdrawn_to_zero_shows_in_the_profile_and_is_told_on_the_stream(
    services: dict[str, ServiceProcess], nats: NatsServer
) -> None:
    identity, profile = services["identity"], services["profile"]
    await serving(identity, profile)
    async with (
        authorised_channel(identity.address) as identity_channel,
        authorised_channel(profile.address) as profile_channel,
    ):
        customer = fx_customer_record()
        party_id = (await link(identity_channel, customer)).party_id
        await ingest(profile_channel, fx_usd_account(), usd_balance("deposit-1", 2, 600000, 600000))

        async def he_holds_usd_6000() -> bool:
            return await usd_shown(profile_channel, party_id) == 600000

        await eventually(he_holds_usd_6000, timeout=15)

        async with profile_changes(nats.url) as told:
            await ingest(profile_channel, usd_balance("withdrawal-1", 3, -600000, 0))
            while True:  # (the deposit's own ProfileChanged may still be on its way)
                changed = await asyncio.wait_for(told.get(), timeout=5)
                if changed.party_id == party_id and usd_change(changed) == (600000, 0):
                    break
            shown = await usd_shown(profile_channel, party_id)

        assert usd_change(changed) == (600000, 0)  # "USD 6,000.00 → 0.00"
        assert changed.cause == events_pb2.CHANGE_CAUSE_SOURCE_EVENT
        assert shown == 0
