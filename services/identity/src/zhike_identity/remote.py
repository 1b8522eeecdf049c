"""Streaming a CSV's records through a running identity service (`resolve-csv --target`).

Each row becomes a LinkSourceRecord call. The service is strict where the batch resolver is
lenient: when it refuses fields (an ID number with a bad check character, say), the row is sent
again without them, so it still gets a party, and the refusal is reported with the line number.

A party named in an early answer may be merged away by a later record that bridges it to
another, and a repeated source key may move its record; so once every row is linked, each record's
party is looked up again (FindParties by source key), and the output names the parties as they
stand at the end.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from collections.abc import Set as AbstractSet

import grpc
from google.rpc import error_details_pb2
from google.type import date_pb2

from zhike.identity.v1 import identity_service_pb2 as pb
from zhike.identity.v1 import identity_service_pb2_grpc as pb_grpc
from zhike.identity.v1 import party_pb2
from zhike_identity.domain.matching.features import RawRecord
from zhike_identity.domain.model import Gender
from zhike_identity.domain.normalise import Unusable, infer_id_kind, parse_date, parse_gender
from zhike_identity.progress import StageProgress
from zhike_runtime.auth.client import BearerToken
from zhike_runtime.grpc_errors import rich_status
from zhike_runtime.tls import open_channel

CONCURRENCY = 16


class StreamFailed(Exception):
    """The service could not take the file: unreachable, or it answered an unexpected error."""


_ID_TYPES = frozenset(party_pb2.IdType.keys())


def source_record_message(
    record: RawRecord, dropped: AbstractSet[str] = frozenset()
) -> party_pb2.SourceRecord:
    """The SourceRecord an adapter sends for this text record, less the `dropped` fields.

    Dates and genders are parsed as the batch resolver reads them, and a value that cannot be
    read is left out; the ID type is inferred the same way, so both paths read a file alike."""
    message = party_pb2.SourceRecord(
        key=party_pb2.SourceRecordKey(
            source_system=record.source, source_record_id=record.source_id
        )
    )
    if "full_name" not in dropped:
        message.full_name = record.full_name
    if record.id_number and "id_number" not in dropped:
        kind = record.id_type.upper() or infer_id_kind(record.id_number) or "OTHER"
        name = f"ID_TYPE_{kind}"
        message.id_type = (
            party_pb2.IdType.Value(name) if name in _ID_TYPES else party_pb2.ID_TYPE_OTHER
        )
        message.id_number = record.id_number
    if "phone" not in dropped:
        message.phone = record.phone
    if "email" not in dropped:
        message.email = record.email
    if record.birth_date and "birth_date" not in dropped:
        try:
            born = parse_date(record.birth_date)
        except Unusable:
            pass
        else:
            message.birth_date.CopyFrom(
                date_pb2.Date(year=born.year, month=born.month, day=born.day)
            )
    if record.gender and "gender" not in dropped:
        try:
            gender = parse_gender(record.gender)
        except Unusable:
            gender = None
        if gender is not None:
            message.gender = (
                party_pb2.GENDER_MALE if gender is Gender.MALE else party_pb2.GENDER_FEMALE
            )
    if "address" not in dropped:
        message.address = record.address
    return message


def _refused_fields(error: grpc.aio.AioRpcError) -> list[str]:
    fields: list[str] = []
    status = rich_status(error)
    for detail in status.details if status is not None else ():
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            fields += [v.field.rsplit(".", 1)[-1] for v in bad_request.field_violations]
    return fields


async def stream_through_service(
    target: str,
    records: Sequence[RawRecord],
    *,
    token: str,
    progress: bool = False,
    credentials: grpc.ChannelCredentials | None = None,
) -> tuple[list[str], list[tuple[int, str]]]:
    """Each record's party id ("" for a record the service refused) and the problems by row.
    `token`: the bearer token the service checks (a source-system role's);
    `credentials`: TLS to the service (zhike_runtime.tls.channel_credentials); None: plaintext."""
    try:
        with StageProgress(sys.stderr, enabled=progress) as bars:
            return await _stream(target, records, bars, credentials, token)
    except grpc.aio.AioRpcError as error:
        raise StreamFailed(f"{error.code().name}: {error.details()}") from error


async def _stream(
    target: str,
    records: Sequence[RawRecord],
    progress: StageProgress,
    credentials: grpc.ChannelCredentials | None,
    token: str,
) -> tuple[list[str], list[tuple[int, str]]]:
    problems: list[tuple[int, str]] = []
    linked = [False] * len(records)
    next_index = iter(range(len(records)))
    done = 0
    async with open_channel(target, credentials, interceptors=[BearerToken(token)]) as channel:
        stub = pb_grpc.IdentityServiceStub(channel)

        async def worker() -> None:
            nonlocal done
            for i in next_index:
                dropped: set[str] = set()
                for _attempt in range(3):
                    request = pb.LinkSourceRecordRequest(
                        source_record=source_record_message(records[i], dropped)
                    )
                    try:
                        await stub.LinkSourceRecord(request, timeout=30)
                    except grpc.aio.AioRpcError as error:
                        refused = _refused_fields(error)
                        if error.code() is not grpc.StatusCode.INVALID_ARGUMENT or not refused:
                            raise
                        problems.extend((i, f"{f}: refused by the service") for f in refused)
                        dropped.update(refused)
                        continue
                    linked[i] = True
                    break
                else:
                    problems.append((i, "not linked: the service refused the record"))
                done += 1
                progress("linking", done, len(records))

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        keys = sorted(
            {(r.source, r.source_id) for r, ok in zip(records, linked, strict=True) if ok}
        )
        final = await _current_parties(stub, keys)
    return [final.get((r.source, r.source_id), "") for r in records], sorted(problems)


async def _current_parties(
    stub: pb_grpc.IdentityServiceStub, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """Each source record's party as it stands now (the survivor of any merge)."""
    parties: dict[tuple[str, str], str] = {}
    pending = iter(keys)

    async def worker() -> None:
        for source, source_id in pending:
            request = pb.FindPartiesRequest(
                source_record=party_pb2.SourceRecordKey(
                    source_system=source, source_record_id=source_id
                )
            )
            answer = await stub.FindParties(request, timeout=30)
            if len(answer.party_ids) != 1:
                raise StreamFailed(
                    f"{source}/{source_id}: the service holds it in {len(answer.party_ids)} "
                    "parties after linking it"
                )
            parties[(source, source_id)] = answer.party_ids[0]

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return parties
