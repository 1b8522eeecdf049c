"""Translation between the contract (zhike.identity.v1) and the domain model."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from google.protobuf.timestamp_pb2 import Timestamp

from zhike.identity.v1 import events_pb2, identity_service_pb2, party_pb2
from zhike_identity.domain.explanations import Explanation
from zhike_identity.domain.model import (
    Decider,
    DomainEvent,
    GoldenRecord,
    GoldenRecordChanged,
    GoldenValue,
    HistoryEntry,
    LinkEvidence,
    PartiesMerged,
    PartyChange,
    PartyCreated,
    PartyForwardingEnded,
    PartySplit,
    PartyView,
    SourceRecordInput,
    SourceRecordKey,
    SourceRecordLinked,
    SourceRecordMoved,
)
from zhike_runtime.events.outbox import OutgoingEvent
from zhike_runtime.masking import mask_address, mask_email, mask_id_number, mask_phone

SUBJECT_PREFIX = "zhike.identity.v1"
PARTY_CREATED_SUBJECT = f"{SUBJECT_PREFIX}.party_created"
SOURCE_RECORD_LINKED_SUBJECT = f"{SUBJECT_PREFIX}.source_record_linked"
SOURCE_RECORD_MOVED_SUBJECT = f"{SUBJECT_PREFIX}.source_record_moved"
PARTIES_MERGED_SUBJECT = f"{SUBJECT_PREFIX}.parties_merged"
PARTY_SPLIT_SUBJECT = f"{SUBJECT_PREFIX}.party_split"
PARTY_FORWARDING_ENDED_SUBJECT = f"{SUBJECT_PREFIX}.party_forwarding_ended"
GOLDEN_RECORD_CHANGED_SUBJECT = f"{SUBJECT_PREFIX}.golden_record_changed"

_DECIDERS = {
    Decider.MODEL: party_pb2.DECIDER_MODEL,
    Decider.STEWARD: party_pb2.DECIDER_STEWARD,
    Decider.SOURCE_KEY: party_pb2.DECIDER_SOURCE_KEY,
}
_CHANGES = {
    PartyChange.CREATED: identity_service_pb2.PARTY_CHANGE_CREATED,
    PartyChange.RECORD_LINKED: identity_service_pb2.PARTY_CHANGE_RECORD_LINKED,
    PartyChange.RECORD_MOVED_IN: identity_service_pb2.PARTY_CHANGE_RECORD_MOVED_IN,
    PartyChange.RECORD_MOVED_OUT: identity_service_pb2.PARTY_CHANGE_RECORD_MOVED_OUT,
    PartyChange.MERGED_INTO: identity_service_pb2.PARTY_CHANGE_MERGED_INTO,
    PartyChange.ABSORBED: identity_service_pb2.PARTY_CHANGE_ABSORBED,
    PartyChange.SPLIT: identity_service_pb2.PARTY_CHANGE_SPLIT,
}


def timestamp(value: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


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


def domain_key(message: party_pb2.SourceRecordKey) -> SourceRecordKey:
    return SourceRecordKey(message.source_system, message.source_record_id)


def source_record_key(key: SourceRecordKey) -> party_pb2.SourceRecordKey:
    return party_pb2.SourceRecordKey(
        source_system=key.source_system, source_record_id=key.source_record_id
    )


def _evidence(evidence: LinkEvidence, *, staff: bool) -> party_pb2.LinkEvidence:
    message = party_pb2.LinkEvidence(
        decided_by=_DECIDERS[evidence.decided_by],
        match_weight=evidence.weight or 0.0,
        model_version=evidence.model_version,
        decide_time=timestamp(evidence.at),
        # An employee's identity is the bank's, not the customer's to see.
        steward=evidence.steward if staff else "",
    )
    if evidence.matched is not None:
        message.matched_record.CopyFrom(source_record_key(evidence.matched))
    return message


def _golden_value(
    value: GoldenValue | None, mask: Callable[[str], str] = str
) -> party_pb2.GoldenValue | None:
    return None if value is None else _golden_listed(value, mask)


def _golden_listed(value: GoldenValue, mask: Callable[[str], str]) -> party_pb2.GoldenValue:
    return party_pb2.GoldenValue(
        value=mask(value.value), source=source_record_key(value.source), basis=value.basis
    )


def golden_message(golden: GoldenRecord, *, unmasked: bool) -> party_pb2.GoldenRecord:
    """The golden record for a caller: identifiers and the address masked unless the caller
    may read personal data (the access table's unmask permission; such reads are audited)."""

    def masked(mask: Callable[[str], str]) -> Callable[[str], str]:
        return str if unmasked else mask

    return party_pb2.GoldenRecord(
        full_name=_golden_value(golden.full_name),
        birth_date=_golden_value(golden.birth_date),
        gender=_golden_value(golden.gender),
        id_number=_golden_value(golden.id_number, masked(mask_id_number)),
        phones=[_golden_listed(v, masked(mask_phone)) for v in golden.phones],
        emails=[_golden_listed(v, masked(mask_email)) for v in golden.emails],
        address=_golden_value(golden.address, masked(mask_address)),
    )


def golden_event_message(golden: GoldenRecord) -> party_pb2.GoldenRecord:
    """The golden record as GoldenRecordChanged carries it: the name and the birth date (YYYY-MM-DD)
    with their provenance only. The profile, the only consumer, shows the name and reads the age
    in its segment rules; sex, address and the (masked) identifiers stay behind identity's API,
    where access rules and the audit log apply, rather than sit in every stream replica for its
    max age (docs/events.md)."""
    return party_pb2.GoldenRecord(
        full_name=_golden_value(golden.full_name), birth_date=_golden_value(golden.birth_date)
    )


def party_message(view: PartyView, *, unmasked: bool, staff: bool) -> party_pb2.Party:
    """The party as a caller sees it: `unmasked` with the permission to read personal data;
    not `staff` for the customer's own channel (a customer-delegated token), which is not told
    which steward linked his records."""
    return party_pb2.Party(
        party_id=view.party_id,
        source_records=[
            party_pb2.LinkedSourceRecord(
                key=source_record_key(r.key), evidence=_evidence(r.evidence, staff=staff)
            )
            for r in view.records
        ],
        golden_record=golden_message(view.golden, unmasked=unmasked),
        create_time=timestamp(view.created_at),
    )


def history_message(entry: HistoryEntry) -> identity_service_pb2.PartyHistoryEntry:
    return identity_service_pb2.PartyHistoryEntry(
        change=_CHANGES[entry.change],
        change_time=timestamp(entry.at),
        decided_by=_DECIDERS[entry.decided_by],
        steward=entry.steward,
        model_version=entry.model_version,
        other_party_id=entry.other_party_id or "",
        source_records=[source_record_key(k) for k in entry.source_records],
        reason=entry.reason,
    )


def explanation_message(explanation: Explanation) -> identity_service_pb2.ExplainLinkResponse:
    return identity_service_pb2.ExplainLinkResponse(
        fields=[
            identity_service_pb2.FieldComparison(
                field=f.field, value_a=f.value_a, value_b=f.value_b, level=f.level, weight=f.weight
            )
            for f in explanation.fields
        ],
        prior_weight=explanation.prior_weight,
        total_weight=explanation.total_weight,
        match_probability=explanation.match_probability,
        link_threshold=explanation.link_weight,
        review_threshold=explanation.review_weight,
        decision=explanation.decision,
        guardrail=explanation.guardrail or "",
        model_version=explanation.model_version,
        same_party_now=explanation.same_party_now,
    )


def outgoing_event(event: DomainEvent) -> OutgoingEvent:
    match event:
        case PartyCreated():
            return OutgoingEvent(
                PARTY_CREATED_SUBJECT,
                events_pb2.PartyCreated(party_id=event.party_id, create_time=timestamp(event.at)),
            )
        case SourceRecordLinked():
            return OutgoingEvent(
                SOURCE_RECORD_LINKED_SUBJECT,
                events_pb2.SourceRecordLinked(
                    party_id=event.party_id,
                    source_record=source_record_key(event.source_record),
                    link_time=timestamp(event.at),
                    link_version=event.link_version,
                ),
            )
        case SourceRecordMoved():
            return OutgoingEvent(
                SOURCE_RECORD_MOVED_SUBJECT,
                events_pb2.SourceRecordMoved(
                    source_record=source_record_key(event.source_record),
                    from_party_id=event.from_party_id,
                    to_party_id=event.to_party_id,
                    move_time=timestamp(event.at),
                    link_version=event.link_version,
                ),
            )
        case PartiesMerged():
            return OutgoingEvent(
                PARTIES_MERGED_SUBJECT,
                events_pb2.PartiesMerged(
                    surviving_party_id=event.surviving_party_id,
                    retired_party_ids=list(event.retired_party_ids),
                    merge_time=timestamp(event.at),
                    forwarding_versions=list(event.forwarding_versions),
                ),
            )
        case PartyForwardingEnded():
            return OutgoingEvent(
                PARTY_FORWARDING_ENDED_SUBJECT,
                events_pb2.PartyForwardingEnded(
                    party_id=event.party_id,
                    forwarding_version=event.forwarding_version,
                    end_time=timestamp(event.at),
                    kept_party_id=event.kept_party_id,
                ),
            )
        case PartySplit():
            return OutgoingEvent(
                PARTY_SPLIT_SUBJECT,
                events_pb2.PartySplit(
                    party_id=event.party_id,
                    new_party_id=event.new_party_id,
                    source_records=[source_record_key(k) for k in event.source_records],
                    split_time=timestamp(event.at),
                    link_versions=list(event.link_versions),
                ),
            )
        case GoldenRecordChanged():
            return OutgoingEvent(
                GOLDEN_RECORD_CHANGED_SUBJECT,
                events_pb2.GoldenRecordChanged(
                    party_id=event.party_id,
                    golden_record=golden_event_message(event.golden),
                    change_time=timestamp(event.at),
                ),
            )
