"""gRPC handlers: decode, call the use case, encode. Errors are mapped by the runtime.

Who may call what, and for which party, the runtime's interceptor has already decided from the
access rules: a customer-delegated token reaches DecideOffers, RecordResponse and the contact
preferences only for its own party (another party is NOT_FOUND before any handler runs). What the
access rules cannot see is the channel in the request: for such a token it must be the app's
(`_on_the_app_only`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import TypeAlias, TypeVar

import grpc

from zhike.offers.v1 import offers_pb2
from zhike.offers.v1 import offers_service_pb2 as pb
from zhike.offers.v1 import offers_service_pb2_grpc as pb_grpc
from zhike_offers.domain.service import CatalogueAdmin, OfferDecisions, StoredOffer
from zhike_offers.transport import codec
from zhike_runtime.auth.access import current_call
from zhike_runtime.errors import InvalidArgument, PermissionDenied

Context: TypeAlias = "grpc.aio.ServicerContext[object, object]"
T = TypeVar("T")

# The one channel a customer-delegated token speaks for: it is the app acting for its customer.
CUSTOMER_CHANNEL = offers_pb2.CHANNEL_MOBILE_APP


async def _offer_named(offer: offers_pb2.Offer, saving: Awaitable[T]) -> T:
    """The use case's answer; its problems with the offer named by the request's fields
    (`offer.value_cny`, `offer.templates[1]`), not the catalogue document's."""
    try:
        return await saving
    except InvalidArgument as error:
        raise codec.offer_error(error, "offer", offer) from None


class OffersHandlers(pb_grpc.OffersServiceServicer):
    def __init__(
        self,
        decisions: OfferDecisions,
        catalogue: CatalogueAdmin,
        *,
        max_page_size: int,
        default_max_offers: int,
        max_sample_size: int,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._decisions = decisions
        self._catalogue = catalogue
        self._max_page_size = max_page_size
        self._default_max_offers = default_max_offers
        self._max_sample_size = max_sample_size
        self._now = now

    # --- decisions ------------------------------------------------------------------------

    async def DecideOffers(
        self, request: pb.DecideOffersRequest, context: Context
    ) -> pb.DecideOffersResponse:
        _on_the_app_only("DecideOffers", request.channel)
        customer = current_call().caller.party_id is not None
        if customer and request.explain:
            # The candidates not chosen lay out the bank's live catalogue and its rules (who
            # qualifies for what, the contact limits): staff see them, the customer's app not.
            raise PermissionDenied("DecideOffers", "explain is for staff, not a customer's token")
        party_id, decision_request = codec.decide_request(
            request, default_max_offers=self._default_max_offers
        )
        decided = await self._decisions.decide(
            party_id,
            decision_request,
            requested_by=current_call().caller.subject,
            follow_merges=_follows_merges(),
        )
        return codec.decide_response(decided, explain=request.explain, with_factors=not customer)

    async def RecordResponse(
        self, request: pb.RecordResponseRequest, context: Context
    ) -> pb.RecordResponseResponse:
        _on_the_app_only("RecordResponse", request.channel)
        duplicate = await self._decisions.record_response(
            codec.response_record(request, self._now()), follow_merges=_follows_merges()
        )
        return pb.RecordResponseResponse(duplicate=duplicate)

    async def ListDecisions(
        self, request: pb.ListDecisionsRequest, context: Context
    ) -> pb.ListDecisionsResponse:
        party_id, size = codec.list_decisions_request(request, max_page_size=self._max_page_size)
        page = await self._decisions.list_decisions(party_id, size, request.page_token)
        return pb.ListDecisionsResponse(
            entries=[codec.log_entry_message(entry) for entry in page.entries],
            next_page_token=page.next_page_token,
        )

    async def GetContactPreferences(
        self, request: pb.GetContactPreferencesRequest, context: Context
    ) -> pb.GetContactPreferencesResponse:
        preferences = await self._decisions.contact_preferences(
            codec.party_request(request.party_id), follow_merges=_follows_merges()
        )
        current_call().about_party(preferences.party_id)
        return pb.GetContactPreferencesResponse(preferences=codec.preferences_message(preferences))

    async def SetContactPreferences(
        self, request: pb.SetContactPreferencesRequest, context: Context
    ) -> pb.SetContactPreferencesResponse:
        change = codec.set_preferences_request(request)
        preferences = await self._decisions.set_contact_preferences(
            change.party_id,
            change.do_not_contact,
            change.personalised_offers,
            change.opted_out_channels,
            follow_merges=_follows_merges(),
        )
        # Audited under the party whose switches changed: a retired id's survivor.
        current_call().about_party(preferences.party_id)
        return pb.SetContactPreferencesResponse(preferences=codec.preferences_message(preferences))

    # --- the catalogue --------------------------------------------------------------------

    async def CreateOffer(
        self, request: pb.CreateOfferRequest, context: Context
    ) -> pb.CreateOfferResponse:
        document = codec.create_request(request)
        stored: StoredOffer = await _offer_named(request.offer, self._catalogue.create(document))
        return pb.CreateOfferResponse(offer=codec.stored_offer_message(stored))

    async def UpdateOffer(
        self, request: pb.UpdateOfferRequest, context: Context
    ) -> pb.UpdateOfferResponse:
        document, expected_version = codec.update_request(request)
        stored: StoredOffer = await _offer_named(
            request.offer, self._catalogue.update(document, expected_version)
        )
        return pb.UpdateOfferResponse(offer=codec.stored_offer_message(stored))

    async def RetireOffer(
        self, request: pb.RetireOfferRequest, context: Context
    ) -> pb.RetireOfferResponse:
        offer_id, expected_version, reason = codec.retire_request(request)
        stored = await self._catalogue.retire(offer_id, expected_version, reason)
        return pb.RetireOfferResponse(offer=codec.stored_offer_message(stored))

    async def GetOffer(self, request: pb.GetOfferRequest, context: Context) -> pb.GetOfferResponse:
        offer_id, version = codec.offer_key(request)
        stored = await self._catalogue.get(offer_id, version)
        return pb.GetOfferResponse(offer=codec.stored_offer_message(stored))

    async def ListOffers(
        self, request: pb.ListOffersRequest, context: Context
    ) -> pb.ListOffersResponse:
        size = codec.list_offers_request(request, max_page_size=self._max_page_size)
        page = await self._catalogue.list(size, request.page_token, request.include_retired)
        return codec.offer_page_response(page)

    async def SimulateOffer(
        self, request: pb.SimulateOfferRequest, context: Context
    ) -> pb.SimulateOfferResponse:
        document, sample_size, segment = codec.simulate_request(
            request, max_sample_size=self._max_sample_size
        )
        result = await _offer_named(
            request.offer, self._catalogue.simulate(document, sample_size, segment)
        )
        return codec.simulation_response(result)

    def register(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_OffersServiceServicer_to_server(self, server)


def _on_the_app_only(method: str, channel: offers_pb2.Channel.ValueType) -> None:
    """Refuses a customer-delegated token that names a channel other than the app's: the channel
    is the token's, not the request's. Otherwise the app could be shown the offers the bank keeps
    for the counter, and log decisions and record responses (teaching the propensity model,
    counting against contact limits) where the customer never was. Checked before the request
    is, as the access rules are; a missing or unknown channel is the codec's INVALID_ARGUMENT.
    Staff and systems name the channel they decide on (a teller the branch)."""
    if current_call().caller.party_id is None:
        return
    if channel != CUSTOMER_CHANNEL and channel in codec.CHANNELS:
        raise PermissionDenied(
            method,
            f"a customer's token acts on {offers_pb2.Channel.Name(CUSTOMER_CHANNEL)} only",
        )


def _follows_merges() -> bool:
    """Whether a party merged away answers for its survivor: for staff and systems, yes; a
    customer's token is for his party as it is now (after a split, a retired id may lead to
    another person), so for it a retired id is not found."""
    return current_call().caller.party_id is None
