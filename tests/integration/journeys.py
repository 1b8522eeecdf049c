"""Client-side helpers for the journeys: the calls a bank channel makes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import grpc

from zhike.identity.v1 import identity_service_pb2 as identity_pb
from zhike.identity.v1 import identity_service_pb2_grpc as identity_grpc
from zhike.identity.v1 import party_pb2
from zhike.profile.v1 import profile_service_pb2 as profile_pb
from zhike.profile.v1 import profile_service_pb2_grpc as profile_grpc
from zhike_runtime.testing.services import answer_or_none


def source_record(source: str, record_id: str, name: str = "测试客户") -> party_pb2.SourceRecord:
    return party_pb2.SourceRecord(
        key=party_pb2.SourceRecordKey(source_system=source, source_record_id=record_id),
        full_name=name,
    )


async def link(
    channel: grpc.aio.Channel,
    record: party_pb2.SourceRecord,
    metadata: tuple[tuple[str, str], ...] = (),
) -> identity_pb.LinkSourceRecordResponse:
    stub = identity_grpc.IdentityServiceStub(channel)
    response: identity_pb.LinkSourceRecordResponse = await stub.LinkSourceRecord(
        identity_pb.LinkSourceRecordRequest(source_record=record), metadata=metadata, timeout=10
    )
    return response


async def profile_or_none(
    channel: grpc.aio.Channel, party_id: str
) -> profile_pb.GetProfileResponse | None:
    stub = profile_grpc.ProfileServiceStub(channel)
    response: profile_pb.GetProfileResponse | None = await answer_or_none(
        stub.GetProfile(profile_pb.GetProfileRequest(party_id=party_id), timeout=5)
    )
    return response


def scalar(database: Path, query: str) -> int:
    """Reads a count straight from a service's SQLite file (what an auditor would do)."""
    with sqlite3.connect(database) as connection:
        value = connection.execute(query).fetchone()[0]
    return int(value)
