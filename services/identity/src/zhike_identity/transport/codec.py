"""Translation between the contract (zhike.identity.v1) and the domain model."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from zhike.identity.v1 import events_pb2, party_pb2
from zhike_identity.domain.model import (
    DomainEvent,
    Party,
    PartyCreated,
    SourceRecordInput,
    SourceRecordKey,
)
from zhike_runtime.events.outbox import OutgoingEvent

SUBJECT_PREFIX = "zhike.identity.v1"
PARTY_CREATED_SUBJECT = f"{SUBJECT_PREFIX}.party_created"
SOURCE_RECORD_LINKED_SUBJECT = f"{SUBJECT_PREFIX}.source_record_linked"


def source_record_input(message: party_pb2.SourceRecord) -> SourceRecordInput:
    birth = message.birth_date
    return SourceRecordInput(
        source_system=message.key.source_system,
        source_record_id=message.key.source_record_id,
        full_name=message.full_name,
        id_type=int(message.id_type),
        id_number=message.id_number,
        phone=message.phone,
        email=message.email,
        birth_date=(birth.year, birth.month, birth.day) if message.HasField("birth_date") else None,
        gender=int(message.gender),
        address=message.address,
    )


def source_record_key(key: SourceRecordKey) -> party_pb2.SourceRecordKey:
    return party_pb2.SourceRecordKey(
        source_system=key.source_system, source_record_id=key.source_record_id
    )


def party_message(party: Party) -> party_pb2.Party:
    return party_pb2.Party(
        party_id=party.party_id, source_records=[source_record_key(k) for k in party.source_records]
    )


def outgoing_event(event: DomainEvent) -> OutgoingEvent:
    if isinstance(event, PartyCreated):
        created = Timestamp()
        created.FromDatetime(event.at)
        return OutgoingEvent(
            PARTY_CREATED_SUBJECT,
            events_pb2.PartyCreated(party_id=event.party_id, create_time=created),
        )
    linked = Timestamp()
    linked.FromDatetime(event.at)
    return OutgoingEvent(
        SOURCE_RECORD_LINKED_SUBJECT,
        events_pb2.SourceRecordLinked(
            party_id=event.party_id,
            source_record=source_record_key(event.source_record),
            link_time=linked,
        ),
    )
