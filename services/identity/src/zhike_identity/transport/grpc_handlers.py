"""gRPC handlers: decode, call the use case, encode. Errors are mapped by the runtime."""

from __future__ import annotations

import datetime as dt
from typing import TypeAlias

import grpc

from zhike.identity.v1 import identity_service_pb2 as pb
from zhike.identity.v1 import identity_service_pb2_grpc as pb_grpc
from zhike_identity.domain.explanations import LinkExplanations
from zhike_identity.domain.linking import Linking
from zhike_identity.domain.model import IdType, LinkDecisionKind
from zhike_identity.domain.queries import PartyQueries, PartyQuery
from zhike_identity.domain.stewardship import Stewardship
from zhike_identity.transport import codec
from zhike_runtime.auth.access import current_call
from zhike_runtime.validation import Violations

Context: TypeAlias = "grpc.aio.ServicerContext[object, object]"
MAX_PARTIES_PER_MERGE = 50
MAX_RECORDS_PER_SPLIT = 500


def _require(v: Violations, present: bool, field: str) -> None:
    if not present:
        v.add(field, "is required")


def _enum_name(v: Violations, field: str, value: int, names: dict[int, str]) -> str:
    if value not in names:
        v.add(field, f"unknown value {value}")
        return ""
    return names[value]


def _actor() -> str:
    """Who decided a steward operation: the authenticated subject, never a request field."""
    return current_call().caller.subject


class IdentityHandlers(pb_grpc.IdentityServiceServicer):
    def __init__(
        self,
        linking: Linking,
        queries: PartyQueries,
        explanations: LinkExplanations,
        stewardship: Stewardship,
    ) -> None:
        self._linking = linking
        self._queries = queries
        self._explanations = explanations
        self._stewardship = stewardship

    async def LinkSourceRecord(
        self, request: pb.LinkSourceRecordRequest, context: Context
    ) -> pb.LinkSourceRecordResponse:
        if not request.HasField("source_record"):
            v = Violations()
            v.add("source_record", "is required")
            v.raise_if_any()
        outcome = await self._linking.link_source_record(
            codec.source_record_input(request.source_record)
        )
        return pb.LinkSourceRecordResponse(
            party_id=outcome.party_id,
            party_created=outcome.party_created,
            merged_party_ids=list(outcome.merged_party_ids),
        )

    async def GetParty(self, request: pb.GetPartyRequest, context: Context) -> pb.GetPartyResponse:
        view = await self._queries.get_party(request.party_id)
        call = current_call()
        call.about_party(view.party_id)
        staff = call.caller.party_id is None
        return pb.GetPartyResponse(
            party=codec.party_message(view, unmasked=call.unmasked, staff=staff)
        )

    async def FindParties(
        self, request: pb.FindPartiesRequest, context: Context
    ) -> pb.FindPartiesResponse:
        v = Violations()
        which = request.WhichOneof("by")
        query = PartyQuery()
        if which is None:
            v.add("by", "set one of source_record, id_number, phone, email, name_and_birth_date")
        elif which == "source_record":
            query = PartyQuery(source_record=codec.domain_key(request.source_record))
        elif which == "id_number":
            kinds = {t.value: t.name for t in IdType}
            kind = ""
            if request.id_number.id_type:
                kind = _enum_name(v, "id_number.id_type", request.id_number.id_type, kinds)
            v.text("id_number.id_number", request.id_number.id_number, required=True, max_length=64)
            query = PartyQuery(id_type=kind, id_number=request.id_number.id_number)
        elif which == "phone":
            query = PartyQuery(phone=v.text("phone", request.phone, required=True, max_length=32))
        elif which == "email":
            query = PartyQuery(email=v.text("email", request.email, required=True, max_length=254))
        else:
            name = request.name_and_birth_date
            full_name = v.text("name_and_birth_date.full_name", name.full_name, required=True)
            born = None
            _require(v, name.HasField("birth_date"), "name_and_birth_date.birth_date")
            if name.HasField("birth_date"):
                try:
                    born = dt.date(name.birth_date.year, name.birth_date.month, name.birth_date.day)
                except ValueError:
                    v.add("name_and_birth_date.birth_date", "is not a calendar date")
            query = PartyQuery(full_name=full_name, birth_date=born)
        v.raise_if_any()
        if which != "source_record":
            current_call().audit_use_of(str(which))
        return pb.FindPartiesResponse(party_ids=await self._queries.find_parties(query))

    async def ExplainLink(
        self, request: pb.ExplainLinkRequest, context: Context
    ) -> pb.ExplainLinkResponse:
        explanation = await self._explanations.explain_link(
            codec.domain_key(request.record_a), codec.domain_key(request.record_b)
        )
        return codec.explanation_message(explanation)

    async def GetPartyHistory(
        self, request: pb.GetPartyHistoryRequest, context: Context
    ) -> pb.GetPartyHistoryResponse:
        entries = await self._queries.party_history(request.party_id)
        return pb.GetPartyHistoryResponse(entries=[codec.history_message(e) for e in entries])

    async def MergeParties(
        self, request: pb.MergePartiesRequest, context: Context
    ) -> pb.MergePartiesResponse:
        if len(request.party_ids) > MAX_PARTIES_PER_MERGE:
            v = Violations()
            v.add("party_ids", f"at most {MAX_PARTIES_PER_MERGE} parties per merge")
            v.raise_if_any()
        survivor = await self._stewardship.merge_parties(
            list(request.party_ids), _actor(), request.reason
        )
        return pb.MergePartiesResponse(surviving_party_id=survivor)

    async def SplitParty(
        self, request: pb.SplitPartyRequest, context: Context
    ) -> pb.SplitPartyResponse:
        if len(request.source_records) > MAX_RECORDS_PER_SPLIT:
            v = Violations()
            v.add("source_records", f"at most {MAX_RECORDS_PER_SPLIT} records per split")
            v.raise_if_any()
        new_party = await self._stewardship.split_party(
            request.party_id,
            [codec.domain_key(k) for k in request.source_records],
            _actor(),
            request.reason,
        )
        return pb.SplitPartyResponse(new_party_id=new_party)

    async def ListLinkReviews(
        self, request: pb.ListLinkReviewsRequest, context: Context
    ) -> pb.ListLinkReviewsResponse:
        reviews, token = await self._stewardship.list_reviews(request.page_size, request.page_token)
        return pb.ListLinkReviewsResponse(
            reviews=[
                pb.LinkReview(
                    review_id=review.review_id,
                    record_a=codec.source_record_key(review.record_a),
                    record_b=codec.source_record_key(review.record_b),
                    party_a=party_a,
                    party_b=party_b,
                    match_weight=review.weight,
                    create_time=codec.timestamp(review.created_at),
                )
                for review, party_a, party_b in reviews
            ],
            next_page_token=token,
        )

    async def ResolveLinkReview(
        self, request: pb.ResolveLinkReviewRequest, context: Context
    ) -> pb.ResolveLinkReviewResponse:
        outcomes = {pb.REVIEW_OUTCOME_LINK: True, pb.REVIEW_OUTCOME_KEEP_APART: False}
        # An unknown outcome is named by the use case with the other bad fields.
        party_a, party_b = await self._stewardship.resolve_review(
            request.review_id, outcomes.get(request.outcome), _actor()
        )
        return pb.ResolveLinkReviewResponse(party_id_a=party_a, party_id_b=party_b)

    async def RecordLinkDecision(
        self, request: pb.RecordLinkDecisionRequest, context: Context
    ) -> pb.RecordLinkDecisionResponse:
        kinds = {
            pb.LINK_DECISION_NEVER_LINK: LinkDecisionKind.NEVER,
            pb.LINK_DECISION_ALWAYS_LINK: LinkDecisionKind.ALWAYS,
        }
        # An unknown decision is named by the use case with the other bad fields.
        party_a, party_b = await self._stewardship.record_decision(
            codec.domain_key(request.record_a),
            codec.domain_key(request.record_b),
            kinds.get(request.decision),
            _actor(),
            request.reason,
        )
        return pb.RecordLinkDecisionResponse(party_id_a=party_a, party_id_b=party_b)

    def register(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_IdentityServiceServicer_to_server(self, server)
