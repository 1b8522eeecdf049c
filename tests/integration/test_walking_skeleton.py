"""Issue 2, journey 1: a record linked at identity shows up in the profile, under one trace."""

from __future__ import annotations

import os
import signal

from zhike_runtime.testing.services import authorised_channel, eventually

from .conftest import ServiceProcess, serving
from .journeys import link, profile_or_none, source_record


async def test_a_linked_record_appears_in_the_profile_under_one_trace_across_services(
    services: dict[str, ServiceProcess],
) -> None:
    identity, profile = services["identity"], services["profile"]
    await serving(identity, profile)

    trace_id = os.urandom(16).hex()
    traceparent = f"00-{trace_id}-{os.urandom(8).hex()}-01"
    async with (
        authorised_channel(identity.address) as identity_channel,
        authorised_channel(profile.address) as profile_channel,
    ):
        linked = await link(
            identity_channel,
            source_record("core_deposits", "D-0001", "刘建军"),
            metadata=(("traceparent", traceparent),),
        )
        assert linked.party_created

        async def profile_has_the_record() -> bool:
            found = await profile_or_none(profile_channel, linked.party_id)
            return found is not None and len(found.profile.source_records) == 1

        await eventually(profile_has_the_record, timeout=10)
        found = await profile_or_none(profile_channel, linked.party_id)
        assert found is not None
        record = found.profile.source_records[0]
        assert (record.source_system, record.source_record_id) == ("core_deposits", "D-0001")

    # A clean stop flushes the spans; then both services' spans must carry the caller's trace.
    assert identity.stop() == 0
    assert profile.stop() == 0
    identity_spans = identity.spans_file.read_text()
    profile_spans = profile.spans_file.read_text()
    assert f'"trace_id": "0x{trace_id}"' in identity_spans
    assert "IdentityService/LinkSourceRecord" in identity_spans
    assert f'"trace_id": "0x{trace_id}"' in profile_spans
    assert "consume zhike.identity.v1.SourceRecordLinked" in profile_spans
    # And the JSON logs of both carry the same trace id.
    assert any(entry.get("trace_id") == trace_id for entry in identity.logs())
    applied = [e for e in profile.logs() if e["message"] == "event applied"]
    assert {e["trace_id"] for e in applied} == {trace_id}


async def test_profile_started_after_the_events_catches_up(
    services: dict[str, ServiceProcess],
) -> None:
    identity, profile = services["identity"], services["profile"]
    await serving(identity)
    async with authorised_channel(identity.address) as channel:
        party_ids = [
            (await link(channel, source_record("cards", f"C-{i}"))).party_id for i in range(20)
        ]
    await serving(profile)
    async with authorised_channel(profile.address) as channel:

        async def all_profiles_exist() -> bool:
            return all([await profile_or_none(channel, p) is not None for p in party_ids])

        await eventually(all_profiles_exist, timeout=15)
    identity.signal(signal.SIGTERM)
    profile.signal(signal.SIGTERM)
    assert identity.wait() == 0
    assert profile.wait() == 0
