"""The offers' gRPC API end to end: a real grpc.aio server with its SQLite file and a real
nats-server, facts arriving as ProfileChanged on the profile's stream. Bad input of every RPC is
INVALID_ARGUMENT naming the field and stores nothing; the catalogue is versioned with optimistic
concurrency; decisions are ranked, explained, logged and paged; responses are idempotent and
teach the contact policy; the customer's switches hold; a customer's token acts only for its
own party."""

from __future__ import annotations

import base64
import dataclasses
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import grpc
import nats
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2

from zhike.offers.v1 import offers_pb2, offers_service_pb2, offers_service_pb2_grpc
from zhike.profile.v1 import events_pb2 as profile_events
from zhike_offers.app import DEFINITION, SERVICE_NAME
from zhike_offers.settings import OffersSettings
from zhike_runtime.app import RunningService
from zhike_runtime.events import headers as h
from zhike_runtime.grpc_errors import rich_status
from zhike_runtime.ids import new_id
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import (
    authorised_channel,
    eventually,
    readiness,
    running_service,
    wait_serving,
)

from ..profile_events import changed, usd

if TYPE_CHECKING:
    from zhike.offers.v1.offers_service_pb2_grpc import OffersServiceAsyncStub

pb = offers_service_pb2
R = TypeVar("R")
SERVING = int(health_pb2.HealthCheckResponse.SERVING)
PROFILE_CHANGED_SUBJECT = "zhike.profile.v1.profile_changed"
APP = offers_pb2.CHANNEL_MOBILE_APP
SUBJECT = "test-user"  # the tokens' subject: the decision log's requested_by


@dataclasses.dataclass
class Stack:
    service: RunningService[OffersSettings]
    channel: Callable[[Sequence[str] | None, str | None], grpc.aio.Channel]
    publish_raw: Callable[[str, bytes, dict[str, str]], Awaitable[object]]

    def api(
        self, roles: Sequence[str] | None = None, party_id: str | None = None
    ) -> OffersServiceAsyncStub:
        return cast(
            "OffersServiceAsyncStub",
            offers_service_pb2_grpc.OffersServiceStub(self.channel(roles, party_id)),
        )

    async def profile_changed(self, message: profile_events.ProfileChanged) -> None:
        """Published as the profile's outbox relay publishes it."""
        event_id = new_id()
        await self.publish_raw(
            PROFILE_CHANGED_SUBJECT,
            message.SerializeToString(),
            {
                h.MSG_ID: event_id,
                h.EVENT_ID: event_id,
                h.EVENT_TYPE: profile_events.ProfileChanged.DESCRIPTOR.full_name,
                h.CONTENT_TYPE: h.PROTOBUF,
            },
        )


@pytest.fixture
async def stack(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Stack]:
    # The profile's and notifications' streams, as they declare them: offers consumes from them.
    broker = await nats.connect(nats_server.url)
    js = broker.jetstream()
    await js.add_stream(name="ZHIKE_PROFILE", subjects=["zhike.profile.v1.>"])
    await js.add_stream(name="ZHIKE_NOTIFICATIONS", subjects=["zhike.notifications.v1.>"])
    opened: list[grpc.aio.Channel] = []
    try:
        async with running_service(
            DEFINITION,
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'offers.db'}",
            nats_url=nats_server.url,
        ) as service:
            await wait_serving(service.grpc_port)

            def channel(roles: Sequence[str] | None, party_id: str | None) -> grpc.aio.Channel:
                opened.append(
                    authorised_channel(
                        f"127.0.0.1:{service.grpc_port}",
                        roles=roles,
                        party_id=party_id,
                        subject=SUBJECT,
                    )
                )
                return opened[-1]

            async def publish_raw(subject: str, payload: bytes, headers: dict[str, str]) -> object:
                return await js.publish(subject, payload, headers=headers)

            yield Stack(service, channel, publish_raw)
            for each in opened:
                await each.close()
    finally:
        await broker.close()


# --- helpers --------------------------------------------------------------------------------


def party() -> str:
    return str(uuid.uuid4())


def violations(error: grpc.aio.AioRpcError) -> list[str]:
    """The fields a google.rpc.BadRequest names."""
    status = rich_status(error)
    assert status is not None, "no google.rpc.BadRequest in the status details"
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    return [v.field for v in bad_request.field_violations]


async def refused(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def invalid(call: Awaitable[Any]) -> list[str]:
    """The fields an INVALID_ARGUMENT answer names (it must be one)."""
    error = await refused(call)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    return violations(error)


def app_offer(offer_id: str, **fields: Any) -> offers_pb2.Offer:
    """A marketing offer on the app for every party, with `fields` set."""
    offer = offers_pb2.Offer(
        offer_id=offer_id,
        names=offers_pb2.OfferNames(zh_cn="测试优惠", en="Test offer"),
        product_code=offer_id.upper(),
        category=offers_pb2.OFFER_CATEGORY_MARKETING,
        channels=[APP],
        value_cny="100",
    )
    for name, value in fields.items():
        offer.ClearField(name)  # type: ignore[arg-type]  # a field name from the test
        if isinstance(value, list):
            getattr(offer, name).extend(value)
        else:
            setattr(offer, name, value)
    return offer


async def create(api: OffersServiceAsyncStub, offer: offers_pb2.Offer) -> offers_pb2.Offer:
    response: pb.CreateOfferResponse = await api.CreateOffer(
        pb.CreateOfferRequest(offer=offer), timeout=10
    )
    return response.offer


async def get_offer(
    api: OffersServiceAsyncStub, offer_id: str, version: int = 0
) -> offers_pb2.Offer:
    response: pb.GetOfferResponse = await api.GetOffer(
        pb.GetOfferRequest(offer_id=offer_id, version=version), timeout=5
    )
    return response.offer


async def decide(
    api: OffersServiceAsyncStub, party_id: str, *, explain: bool = True, max_offers: int = 20
) -> pb.DecideOffersResponse:
    response: pb.DecideOffersResponse = await api.DecideOffers(
        pb.DecideOffersRequest(
            party_id=party_id, channel=APP, max_offers=max_offers, explain=explain
        ),
        timeout=10,
    )
    return response


def chosen(response: pb.DecideOffersResponse) -> list[str]:
    return [decision.offer_id for decision in response.decisions]


def reasons(response: pb.DecideOffersResponse) -> dict[str, offers_pb2.NotChosenOffer]:
    return {item.offer_id: item for item in response.not_chosen}


async def respond(
    api: OffersServiceAsyncStub,
    party_id: str,
    decision: offers_pb2.OfferDecision,
    kind: pb.ResponseKind.ValueType,
    response_id: str | None = None,
) -> bool:
    response: pb.RecordResponseResponse = await api.RecordResponse(
        pb.RecordResponseRequest(
            response_id=response_id or str(uuid.uuid4()),
            decision_id=decision.decision_id,
            offer_id=decision.offer_id,
            party_id=party_id,
            kind=kind,
            channel=APP,
        ),
        timeout=5,
    )
    return response.duplicate


async def log_of(api: OffersServiceAsyncStub, party_id: str) -> list[pb.DecisionLogEntry]:
    response: pb.ListDecisionsResponse = await api.ListDecisions(
        pb.ListDecisionsRequest(party_id=party_id), timeout=5
    )
    return list(response.entries)


# --- the service answers --------------------------------------------------------------------


async def test_every_rpc_answers_and_an_empty_request_is_refused_by_field(stack: Stack) -> None:
    assert await readiness(stack.service.grpc_port, SERVICE_NAME) == SERVING
    channel = stack.channel(None, None)
    codes: dict[str, grpc.StatusCode] = {}
    for method in pb.DESCRIPTOR.services_by_name["OffersService"].methods:
        call = channel.unary_unary(
            f"/{SERVICE_NAME}/{method.name}",
            request_serializer=bytes,
            response_deserializer=bytes,
        )
        try:
            await call(b"", timeout=10)
            codes[method.name] = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as error:
            codes[method.name] = error.code()
    # Listing the catalogue needs nothing; every other RPC names what is missing.
    assert codes == dict.fromkeys(codes, grpc.StatusCode.INVALID_ARGUMENT) | {
        "ListOffers": grpc.StatusCode.OK
    }
    assert len(codes) == 11


# --- bad input ------------------------------------------------------------------------------


async def test_bad_offers_are_refused_naming_the_field_and_nothing_is_stored(stack: Stack) -> None:
    api = stack.api()
    cases = [
        (app_offer("bad_offer", eligibility=["balance >= 1.0"]), ["offer.eligibility[0]"]),
        (app_offer("bad_offer", applicability=['assets["USD"] > 1']), ["offer.applicability[0]"]),
        # Inside a string literal CEL takes them; shown back, the clause would read otherwise.
        (app_offer("bad_offer", eligibility=['tier == "gold\u202e"']), ["offer.eligibility[0]"]),
        (app_offer("bad_offer", applicability=['tier != "\x00"']), ["offer.applicability[0]"]),
        (app_offer("bad_offer", channels=[]), ["offer.channels"]),
        (app_offer("bad_offer", category=9), ["offer.category"]),
        (app_offer("bad_offer", depends_on=[99]), ["offer.depends_on[0]"]),
        (
            app_offer(
                "bad_offer",
                templates=[offers_pb2.ChannelTemplate(channel=42, template_id="t")],  # type: ignore[arg-type]
            ),
            ["offer.templates[0].channel"],
        ),
        (app_offer("bad_offer", value_cny="1e400"), ["offer.value_cny"]),
        # Finer than storage keeps: stored rounded, it would be another offer (a lever of 0).
        (app_offer("bad_offer", value_cny="1e-999999"), ["offer.value_cny"]),
        (app_offer("bad_offer", value_cny="0.001"), ["offer.value_cny"]),
        (app_offer("bad_offer", levers="1e-2000000"), ["offer.levers"]),
        (app_offer("bad_offer", value_cny=""), ["offer.value_cny"]),
    ]
    for offer, fields in cases:
        assert await invalid(api.CreateOffer(pb.CreateOfferRequest(offer=offer))) == fields
        assert (
            await invalid(api.SimulateOffer(pb.SimulateOfferRequest(offer=offer, sample_size=10)))
            == fields
        )
    error = await refused(
        api.CreateOffer(
            pb.CreateOfferRequest(offer=app_offer("bad_offer", eligibility=['assets["USD"] > 1']))
        )
    )
    # The position in the clause: the operator at line 1, column 15.
    assert re.search(r"offer\.eligibility\[0\]: .*at 1:15: .*\(double, int\)", error.details())

    missing = await refused(get_offer(api, "bad_offer"))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    listed = await api.ListOffers(pb.ListOffersRequest(include_retired=True), timeout=5)
    assert "bad_offer" not in [offer.offer_id for offer in listed.offers]


async def test_more_than_50_context_boosts_are_refused_naming_the_field_and_nothing_is_stored(
    stack: Stack,
) -> None:
    api = stack.api()
    await create(api, app_offer("app_card"))
    boosted = app_offer("app_card")
    boosted.context_boosts.update({f"journey=step_{index}": "1.5" for index in range(51)})
    drafted = app_offer("new_card")
    drafted.context_boosts.update(boosted.context_boosts)

    fields = [
        await invalid(api.CreateOffer(pb.CreateOfferRequest(offer=drafted))),
        await invalid(api.UpdateOffer(pb.UpdateOfferRequest(offer=boosted, expected_version=1))),
        await invalid(api.SimulateOffer(pb.SimulateOfferRequest(offer=drafted, sample_size=10))),
    ]

    assert fields == [["offer.context_boosts"]] * 3
    assert (await refused(get_offer(api, "new_card"))).code() == grpc.StatusCode.NOT_FOUND
    kept = await get_offer(api, "app_card")
    assert (kept.version, dict(kept.context_boosts)) == (1, {})


async def test_bad_catalogue_requests_are_refused_and_change_nothing(stack: Stack) -> None:
    api = stack.api()
    created = await create(api, app_offer("app_card"))
    assert created.version == 1

    fixed = app_offer("app_card", value_cny="-5")
    assert await invalid(
        api.UpdateOffer(pb.UpdateOfferRequest(offer=fixed, expected_version=1))
    ) == ["offer.value_cny"]
    assert await invalid(
        api.UpdateOffer(pb.UpdateOfferRequest(offer=app_offer("app_card"), expected_version=0))
    ) == ["expected_version"]
    assert await invalid(
        api.RetireOffer(pb.RetireOfferRequest(offer_id="app_card", expected_version=0))
    ) == ["expected_version"]
    assert await invalid(api.GetOffer(pb.GetOfferRequest(offer_id="App Card"))) == ["offer_id"]
    # Beyond the stored INTEGER: PostgreSQL would refuse the query (INTERNAL).
    assert await invalid(api.GetOffer(pb.GetOfferRequest(offer_id="app_card", version=2**31))) == [
        "version"
    ]
    assert await invalid(api.ListOffers(pb.ListOffersRequest(page_size=10**6))) == ["page_size"]
    assert await invalid(api.ListOffers(pb.ListOffersRequest(page_token="forged"))) == [
        "page_token"
    ]
    assert await invalid(
        api.SimulateOffer(pb.SimulateOfferRequest(offer=app_offer("draft"), sample_size=10**6))
    ) == ["sample_size"]

    still = await get_offer(api, "app_card")
    assert (still.version, still.retired, still.value_cny) == (1, False, "100")


async def test_bad_decision_requests_are_refused_and_nothing_is_logged(stack: Stack) -> None:
    api = stack.api()
    someone = party()

    def request(**fields: Any) -> pb.DecideOffersRequest:
        base: dict[str, Any] = {"party_id": someone, "channel": APP}
        return pb.DecideOffersRequest(**(base | fields))

    assert await invalid(api.DecideOffers(request(channel=0))) == ["channel"]
    assert await invalid(api.DecideOffers(request(channel=99))) == ["channel"]
    assert await invalid(api.DecideOffers(request(max_offers=10**6))) == ["max_offers"]
    named = await refused(api.DecideOffers(request(party_id="刘建军")))
    assert violations(named) == ["party_id"]
    said = [named.details() or ""] + [
        value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        for _, value in named.trailing_metadata() or ()
    ]
    assert not [text for text in said if "刘建军" in text]  # the bad value is never echoed
    assert await invalid(api.DecideOffers(request(context={"journey": "fx transfer"}))) == [
        "context.journey"
    ]
    assert await invalid(
        api.ListDecisions(pb.ListDecisionsRequest(party_id=someone, page_size=10**6))
    ) == ["page_size"]
    assert await invalid(api.GetContactPreferences(pb.GetContactPreferencesRequest())) == [
        "party_id"
    ]
    assert await invalid(
        api.SetContactPreferences(pb.SetContactPreferencesRequest(party_id=someone))
    ) == ["do_not_contact"]

    assert await log_of(api, someone) == []
    preferences = (
        await api.GetContactPreferences(pb.GetContactPreferencesRequest(party_id=someone))
    ).preferences
    assert (preferences.do_not_contact, preferences.personalised_offers) == (False, True)
    assert not preferences.HasField("update_time")  # still the defaults


async def test_a_bad_response_is_refused_and_its_id_stays_unused(stack: Stack) -> None:
    api = stack.api()
    await create(api, app_offer("app_card"))
    someone = party()
    [decision] = (await decide(api, someone, max_offers=1)).decisions
    response_id = str(uuid.uuid4())

    def request(**fields: Any) -> pb.RecordResponseRequest:
        base: dict[str, Any] = {
            "response_id": response_id,
            "decision_id": decision.decision_id,
            "offer_id": decision.offer_id,
            "party_id": someone,
            "kind": pb.RESPONSE_KIND_CLICK,
            "channel": APP,
        }
        return pb.RecordResponseRequest(**(base | fields))

    assert await invalid(api.RecordResponse(request(kind=12))) == ["kind"]
    assert await invalid(api.RecordResponse(request(channel=0))) == ["channel"]
    assert await invalid(api.RecordResponse(request(response_id="r-1"))) == ["response_id"]
    future = Timestamp(seconds=4_000_000_000)
    assert await invalid(api.RecordResponse(request(response_time=future))) == ["response_time"]
    # Nothing was recorded under the id: the first good call is not a duplicate.
    assert await respond(api, someone, decision, pb.RESPONSE_KIND_CLICK, response_id) is False


# --- the catalogue --------------------------------------------------------------------------


async def test_an_offer_is_created_updated_with_its_version_and_retired(stack: Stack) -> None:
    api = stack.api()
    created = await create(api, app_offer("app_card", levers="1.5"))
    assert (created.version, created.levers, created.retired) == (1, "1.5", False)
    assert created.HasField("update_time")
    assert await get_offer(api, "app_card") == created

    again = await refused(create(api, app_offer("app_card")))
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION

    updated = (
        await api.UpdateOffer(
            pb.UpdateOfferRequest(offer=app_offer("app_card", value_cny="250"), expected_version=1),
            timeout=10,
        )
    ).offer
    assert (updated.version, updated.value_cny, updated.levers) == (2, "250", "1")

    # A writer who read version 1 is told to read again; nothing changes.
    stale = await refused(
        api.UpdateOffer(
            pb.UpdateOfferRequest(offer=app_offer("app_card", value_cny="999"), expected_version=1)
        )
    )
    assert stale.code() == grpc.StatusCode.ABORTED
    assert (await get_offer(api, "app_card")).value_cny == "250"
    assert (await get_offer(api, "app_card", version=1)) == created

    someone = party()
    assert "app_card" in chosen(await decide(api, someone))
    retired = (
        await api.RetireOffer(
            pb.RetireOfferRequest(offer_id="app_card", expected_version=2, reason="campaign over"),
            timeout=10,
        )
    ).offer
    assert (retired.version, retired.retired) == (3, True)
    after = await decide(api, someone)
    assert "app_card" not in chosen(after)
    assert "app_card" not in reasons(after)  # retired: not a candidate at all

    live = await api.ListOffers(pb.ListOffersRequest(), timeout=5)
    every = await api.ListOffers(pb.ListOffersRequest(include_retired=True), timeout=5)
    assert "app_card" not in [offer.offer_id for offer in live.offers]
    assert [o.version for o in every.offers if o.offer_id == "app_card"] == [3]
    gone = await refused(
        api.UpdateOffer(pb.UpdateOfferRequest(offer=app_offer("app_card"), expected_version=3))
    )
    assert gone.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_offers_list_in_pages_with_opaque_tokens(stack: Stack) -> None:
    api = stack.api()
    for name in ("app_a", "app_b", "app_c"):
        await create(api, app_offer(name))
    whole = await api.ListOffers(pb.ListOffersRequest(page_size=100), timeout=5)
    assert whole.next_page_token == ""
    everyone = [offer.offer_id for offer in whole.offers]
    assert everyone == sorted(everyone)
    assert {"app_a", "app_b", "app_c", "usd_fx_wealth"} <= set(everyone)

    paged: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await api.ListOffers(pb.ListOffersRequest(page_size=3, page_token=token), timeout=5)
        assert len(page.offers) <= 3
        assert page.catalogue_version == whole.catalogue_version
        paged.extend(offer.offer_id for offer in page.offers)
        pages += 1
        token = page.next_page_token
        if not token:
            break
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        assert b"app_" not in raw  # opaque: no offer id readable in it
    assert paged == everyone
    assert pages == -(-len(everyone) // 3)

    first = await api.ListOffers(pb.ListOffersRequest(page_size=2), timeout=5)
    tampered = first.next_page_token[:-2] + ("AA" if first.next_page_token[-2:] != "AA" else "BB")
    assert await invalid(api.ListOffers(pb.ListOffersRequest(page_token=tampered))) == [
        "page_token"
    ]
    # A token of one listing does not page another.
    assert await invalid(
        api.ListOffers(pb.ListOffersRequest(page_token=first.next_page_token, include_retired=True))
    ) == ["page_token"]
    assert await invalid(
        api.ListDecisions(
            pb.ListDecisionsRequest(party_id=party(), page_token=first.next_page_token)
        )
    ) == ["page_token"]


async def test_a_page_token_pages_only_for_the_caller_it_was_issued_to(stack: Stack) -> None:
    api = stack.api()
    for name in ("app_a", "app_b", "app_c"):
        await create(api, app_offer(name))
    first = await api.ListOffers(pb.ListOffersRequest(page_size=2), timeout=5)

    async with authorised_channel(
        f"127.0.0.1:{stack.service.grpc_port}", subject="another-admin"
    ) as channel:
        another = offers_service_pb2_grpc.OffersServiceStub(channel)
        fields = await invalid(
            another.ListOffers(pb.ListOffersRequest(page_token=first.next_page_token))
        )

    assert fields == ["page_token"]
    second = await api.ListOffers(pb.ListOffersRequest(page_token=first.next_page_token))
    assert len(second.offers) > 0


async def test_a_simulated_draft_is_counted_over_the_projection_and_never_stored(
    stack: Stack,
) -> None:
    api = stack.api()
    holders = [party() for _ in range(3)]
    for index, holder in enumerate(holders):
        await stack.profile_changed(changed(holder, 1, usd(6000 if index < 2 else 10)))

    draft = app_offer(
        "usd_app_draft",
        eligibility=['assets["USD"] >= 5000.0'],
        applicability=['!("USD_APP" in products)'],
    )

    async def simulated() -> pb.SimulateOfferResponse:
        result: pb.SimulateOfferResponse = await api.SimulateOffer(
            pb.SimulateOfferRequest(offer=draft), timeout=10
        )
        return result

    async def every_party_projected() -> bool:
        return (await simulated()).population_size >= 3

    await eventually(every_party_projected, timeout=15)
    result = await simulated()
    assert (result.population_size, result.sample_size) == (3, 3)
    assert result.eligible_count == 2
    assert (
        result.eligible_count
        >= result.applicable_count
        >= result.suitable_count
        >= result.contactable_count
    )
    assert result.expected_contacts_per_day == 0.0  # the app is no outbound channel
    assert all(rival.names.en for rival in result.competing_offers)
    assert (await refused(get_offer(api, "usd_app_draft"))).code() == grpc.StatusCode.NOT_FOUND
    listed = await api.ListOffers(pb.ListOffersRequest(include_retired=True), timeout=5)
    assert "usd_app_draft" not in [offer.offer_id for offer in listed.offers]


# --- decisions ------------------------------------------------------------------------------


async def test_decide_offers_ranks_and_explains_every_candidate_not_chosen(stack: Stack) -> None:
    api = stack.api()
    await create(api, app_offer("app_big", value_cny="5000"))
    await create(api, app_offer("app_small", value_cny="10"))
    holder = party()
    await stack.profile_changed(changed(holder, 1, usd(6000)))

    async def usd_is_projected() -> bool:
        fx = reasons(await decide(api, holder)).get("usd_fx_wealth")
        return fx is not None and fx.reason == offers_pb2.NOT_CHOSEN_REASON_UNSUITABLE

    await eventually(usd_is_projected, timeout=15)

    response = await decide(api, holder, max_offers=1)
    assert chosen(response) == ["app_big"]
    [best] = response.decisions
    assert (best.rank, best.offer_version, best.product_code) == (1, 1, "APP_BIG")
    assert best.names.en == "Test offer"
    assert best.factors.priority == pytest.approx(
        best.factors.propensity
        * best.factors.context_weight
        * best.factors.value
        * best.factors.levers
    )
    assert uuid.UUID(best.decision_id)
    why = reasons(response)
    # Eligible, but ranked below the one asked for: with its factors to compare.
    assert why["app_small"].reason == offers_pb2.NOT_CHOSEN_REASON_BELOW_CUTOFF
    assert why["app_small"].factors.priority < best.factors.priority
    # USD 6,000 but no risk assessment: an R2 product does not suit, whatever its priority.
    assert why["usd_fx_wealth"].reason == offers_pb2.NOT_CHOSEN_REASON_UNSUITABLE
    assert "R2" in why["usd_fx_wealth"].detail
    # The first false clause, by position and text.
    equity = why["balanced_equity_fund"]
    assert equity.reason == offers_pb2.NOT_CHOSEN_REASON_INELIGIBLE
    assert (equity.clause.index, equity.clause.expression) == (0, 'assets["CNY"] >= 50000.0')
    assert response.personalised
    assert response.arbitration_id
    assert response.catalogue_version
    assert response.model_version

    quiet = await decide(api, holder, explain=False, max_offers=1)
    assert chosen(quiet) == ["app_big"]
    assert list(quiet.not_chosen) == []
    assert quiet.decisions[0].decision_id != best.decision_id  # a new decision each call


async def test_record_response_is_idempotent_by_response_id(stack: Stack) -> None:
    api = stack.api()
    await create(api, app_offer("app_card"))
    someone, other = party(), party()
    [decision] = (await decide(api, someone, max_offers=1)).decisions
    response_id = str(uuid.uuid4())
    assert await respond(api, someone, decision, pb.RESPONSE_KIND_IMPRESSION, response_id) is False
    assert await respond(api, someone, decision, pb.RESPONSE_KIND_IMPRESSION, response_id) is True
    assert await respond(api, someone, decision, pb.RESPONSE_KIND_CLICK) is False

    # Another party's decision, or another offer under the decision: not found.
    theirs = await refused(respond(api, other, decision, pb.RESPONSE_KIND_CLICK))
    assert theirs.code() == grpc.StatusCode.NOT_FOUND
    wrong_offer = offers_pb2.OfferDecision(
        decision_id=decision.decision_id, offer_id="usd_fx_wealth"
    )
    mismatched = await refused(respond(api, someone, wrong_offer, pb.RESPONSE_KIND_CLICK))
    assert mismatched.code() == grpc.StatusCode.NOT_FOUND


async def test_three_ignored_impressions_suppress_the_offer(stack: Stack) -> None:
    api = stack.api()
    await create(api, app_offer("app_card", value_cny="5000"))
    someone = party()
    for ignored in range(3):
        response = await decide(api, someone, max_offers=1)
        assert chosen(response) == ["app_card"], f"after {ignored} ignores"
        await respond(api, someone, response.decisions[0], pb.RESPONSE_KIND_IGNORE)

    after = await decide(api, someone)
    assert "app_card" not in chosen(after)
    suppressed = reasons(after)["app_card"]
    assert suppressed.reason == offers_pb2.NOT_CHOSEN_REASON_SUPPRESSED
    assert suppressed.suppression_rule == offers_pb2.SUPPRESSION_RULE_IGNORED
    # Only this party's: another still gets it.
    assert chosen(await decide(api, party(), max_offers=1)) == ["app_card"]


async def test_opted_out_channels_are_kept_returned_and_checked(stack: Stack) -> None:
    api = stack.api()
    someone = party()

    switched = (
        await api.SetContactPreferences(
            pb.SetContactPreferencesRequest(
                party_id=someone,
                opted_out_channels=offers_pb2.OptedOutChannels(
                    channels=[offers_pb2.CHANNEL_EMAIL, offers_pb2.CHANNEL_SMS]
                ),
            ),
            timeout=10,
        )
    ).preferences
    # Absent: unchanged (another switch leaves the channels as they are).
    unchanged = (
        await api.SetContactPreferences(
            pb.SetContactPreferencesRequest(party_id=someone, do_not_contact=True), timeout=10
        )
    ).preferences
    read = await api.GetContactPreferences(
        pb.GetContactPreferencesRequest(party_id=someone), timeout=5
    )

    assert list(switched.opted_out_channels) == [offers_pb2.CHANNEL_SMS, offers_pb2.CHANNEL_EMAIL]
    assert switched.version == 1
    assert list(unchanged.opted_out_channels) == list(switched.opted_out_channels)
    assert unchanged.version == 2
    assert read.preferences == unchanged
    assert await invalid(
        api.SetContactPreferences(
            pb.SetContactPreferencesRequest(
                party_id=someone,
                opted_out_channels=offers_pb2.OptedOutChannels(
                    channels=[offers_pb2.CHANNEL_MOBILE_APP]
                ),
            )
        )
    ) == ["opted_out_channels.channels[0]"]


async def test_personalised_offers_off_leaves_only_non_personalised_offers(stack: Stack) -> None:
    api = stack.api()
    await create(api, app_offer("app_personal", value_cny="5000"))
    await create(api, app_offer("app_for_all", personalised=False))
    someone = party()
    before = await decide(api, someone)
    assert before.personalised
    assert {"app_personal", "app_for_all"} <= set(chosen(before))

    switched = (
        await api.SetContactPreferences(
            pb.SetContactPreferencesRequest(party_id=someone, personalised_offers=False),
            timeout=10,
        )
    ).preferences
    assert (switched.party_id, switched.personalised_offers, switched.do_not_contact) == (
        someone,
        False,
        False,
    )
    assert switched.HasField("update_time")
    read = await api.GetContactPreferences(
        pb.GetContactPreferencesRequest(party_id=someone), timeout=5
    )
    assert read.preferences == switched

    after = await decide(api, someone)
    assert after.personalised is False
    assert "app_personal" not in chosen(after)
    assert "app_for_all" in chosen(after)
    listed = await api.ListOffers(pb.ListOffersRequest(page_size=100), timeout=5)
    personalised = {offer.offer_id for offer in listed.offers if offer.personalised}
    assert not personalised & set(chosen(after))
    assert reasons(after)["app_personal"].reason == offers_pb2.NOT_CHOSEN_REASON_NOT_PERSONALISED
    # Another party is not affected.
    assert (await decide(api, party())).personalised


async def test_the_decision_log_pages_newest_first_with_everything_to_audit(stack: Stack) -> None:
    api = stack.api()
    await create(api, app_offer("app_card"))
    someone = party()
    arbitrations = [(await decide(api, someone, explain=False)).arbitration_id for _ in range(3)]

    auditor = stack.api(["auditor"])
    first = await auditor.ListDecisions(
        pb.ListDecisionsRequest(party_id=someone, page_size=2), timeout=5
    )
    assert first.next_page_token
    second = await auditor.ListDecisions(
        pb.ListDecisionsRequest(party_id=someone, page_size=2, page_token=first.next_page_token),
        timeout=5,
    )
    assert second.next_page_token == ""
    entries = [*first.entries, *second.entries]
    assert [entry.arbitration_id for entry in entries] == arbitrations[::-1]
    newest = entries[0]
    assert newest.party_id == someone
    assert newest.trigger == pb.DECISION_TRIGGER_REQUEST
    assert newest.channel == APP
    assert newest.requested_by == SUBJECT
    assert re.fullmatch(r"[0-9a-f]{64}", newest.inputs_digest)
    assert newest.catalogue_version
    assert newest.model_version
    assert "app_card" in [decision.offer_id for decision in newest.decisions]
    # Every explanation is kept, though the caller did not ask for it.
    assert "usd_fx_wealth" in [item.offer_id for item in newest.not_chosen]
    # A token of one party's log does not page another's.
    assert await invalid(
        auditor.ListDecisions(
            pb.ListDecisionsRequest(party_id=party(), page_token=first.next_page_token)
        )
    ) == ["page_token"]


# --- who may ask ----------------------------------------------------------------------------


async def merged_party(stack: Stack) -> tuple[str, str]:
    """A party merged into another, as offers learnt it from the profile: (retired, survivor)."""
    retired, survivor = party(), party()
    await stack.profile_changed(changed(retired, 1, usd(10)))
    await stack.profile_changed(changed(retired, 2, merged_into=survivor))
    admin = stack.api()

    async def merged() -> bool:
        read = await admin.GetContactPreferences(
            pb.GetContactPreferencesRequest(party_id=retired), timeout=5
        )
        found: str = read.preferences.party_id
        return found == survivor

    await eventually(merged)
    return retired, survivor


async def test_switches_set_through_a_retired_id_are_audited_under_its_survivor(
    stack: Stack,
) -> None:
    retired, survivor = await merged_party(stack)
    agent = stack.api(["call_centre_agent"])

    answered = await agent.SetContactPreferences(
        pb.SetContactPreferencesRequest(party_id=retired, do_not_contact=True), timeout=10
    )

    assert answered.preferences.party_id == survivor
    audited = [
        e.party_id
        for e in await stack.service.audit.read()
        if e.method.endswith("/SetContactPreferences")
    ]
    assert audited == [survivor]


async def test_a_customer_token_for_a_retired_id_finds_no_party_and_changes_nothing(
    stack: Stack,
) -> None:
    # After a split the retired id may lead to another person: the app must ask again who
    # its customer is, and is answered as for any party but its own.
    retired, survivor = await merged_party(stack)
    mobile = stack.api(["channel_app"], party_id=retired)

    codes = [
        (await refused(call)).code()
        for call in (
            decide(mobile, retired, explain=False),
            mobile.GetContactPreferences(pb.GetContactPreferencesRequest(party_id=retired)),
            mobile.SetContactPreferences(
                pb.SetContactPreferencesRequest(party_id=retired, do_not_contact=True)
            ),
        )
    ]

    assert codes == [grpc.StatusCode.NOT_FOUND] * 3
    admin = stack.api()
    assert await log_of(admin, survivor) == []
    held = await admin.GetContactPreferences(
        pb.GetContactPreferencesRequest(party_id=survivor), timeout=5
    )
    assert held.preferences.do_not_contact is False


async def app_customer(
    stack: Stack,
) -> tuple[OffersServiceAsyncStub, str, OffersServiceAsyncStub]:
    """The staff API after creating the app offer app_card, a new party, and the app's API
    with that party's customer-delegated token."""
    admin = stack.api()
    await create(admin, app_offer("app_card", value_cny="5000"))
    customer = party()
    return admin, customer, stack.api(["channel_app"], party_id=customer)


async def test_a_customer_token_decides_only_for_its_own_party(stack: Stack) -> None:
    admin = stack.api()
    await create(admin, app_offer("app_card", value_cny="5000"))
    customer, stranger = party(), party()
    mobile = stack.api(["channel_app"], party_id=customer)

    own = await decide(mobile, customer, explain=False, max_offers=1)
    assert chosen(own) == ["app_card"]
    await respond(mobile, customer, own.decisions[0], pb.RESPONSE_KIND_CLICK)

    for call in (
        decide(mobile, stranger, explain=False),
        mobile.SetContactPreferences(
            pb.SetContactPreferencesRequest(party_id=stranger, do_not_contact=True)
        ),
        mobile.GetContactPreferences(pb.GetContactPreferencesRequest(party_id=stranger)),
    ):
        # As if the party did not exist: nothing tells the app whether it does.
        assert (await refused(call)).code() == grpc.StatusCode.NOT_FOUND
    for call in (
        mobile.ListDecisions(pb.ListDecisionsRequest(party_id=customer)),
        mobile.CreateOffer(pb.CreateOfferRequest(offer=app_offer("app_sneaky"))),
    ):
        assert (await refused(call)).code() == grpc.StatusCode.PERMISSION_DENIED

    assert await log_of(admin, stranger) == []
    preferences = (
        await admin.GetContactPreferences(pb.GetContactPreferencesRequest(party_id=stranger))
    ).preferences
    assert preferences.do_not_contact is False
    assert [entry.requested_by for entry in await log_of(admin, customer)] == [SUBJECT]


# The channels a customer's token may not speak for: every one the contract knows but the app.
NOT_THE_APP = [number for number in offers_pb2.Channel.values() if number not in (0, APP)]


async def test_a_customer_token_deciding_on_another_channel_is_denied_and_nothing_is_logged(
    stack: Stack,
) -> None:
    admin = stack.api()
    await create(admin, app_offer("branch_only", channels=[offers_pb2.CHANNEL_BRANCH]))
    customer = party()
    mobile = stack.api(["channel_app"], party_id=customer)

    codes = [
        (
            await refused(
                mobile.DecideOffers(
                    pb.DecideOffersRequest(party_id=customer, channel=number, max_offers=5),
                    timeout=10,
                )
            )
        ).code()
        for number in NOT_THE_APP
    ]

    assert codes == [grpc.StatusCode.PERMISSION_DENIED] * len(NOT_THE_APP)
    assert await log_of(admin, customer) == []


async def test_a_customer_token_responding_on_another_channel_is_denied_and_nothing_is_recorded(
    stack: Stack,
) -> None:
    admin = stack.api()
    await create(
        admin, app_offer("everywhere", channels=[APP, offers_pb2.CHANNEL_BRANCH], value_cny="5000")
    )
    customer = party()
    mobile = stack.api(["channel_app"], party_id=customer)
    decision = (await decide(mobile, customer, explain=False, max_offers=1)).decisions[0]
    response_id = str(uuid.uuid4())

    def accepted_at(number: offers_pb2.Channel.ValueType) -> pb.RecordResponseRequest:
        return pb.RecordResponseRequest(
            response_id=response_id,
            decision_id=decision.decision_id,
            offer_id=decision.offer_id,
            party_id=customer,
            kind=pb.RESPONSE_KIND_ACCEPT,
            channel=number,
        )

    codes = [
        (await refused(mobile.RecordResponse(accepted_at(number), timeout=5))).code()
        for number in NOT_THE_APP
    ]

    assert codes == [grpc.StatusCode.PERMISSION_DENIED] * len(NOT_THE_APP)
    # Nothing was recorded under that response id: a teller reporting it now is its first time.
    teller = stack.api(["branch_teller"])
    first: pb.RecordResponseResponse = await teller.RecordResponse(
        accepted_at(offers_pb2.CHANNEL_BRANCH), timeout=5
    )
    assert first.duplicate is False


async def test_a_customer_token_decides_and_responds_on_the_app_channel(stack: Stack) -> None:
    admin, customer, mobile = await app_customer(stack)

    decided = await decide(mobile, customer, explain=False, max_offers=1)
    duplicate = await respond(mobile, customer, decided.decisions[0], pb.RESPONSE_KIND_CLICK)

    assert (chosen(decided), duplicate) == (["app_card"], False)
    assert [entry.channel for entry in await log_of(admin, customer)] == [APP]


async def test_a_customer_token_is_answered_without_the_banks_priority_factors(
    stack: Stack,
) -> None:
    admin, customer, mobile = await app_customer(stack)

    for_the_app = await decide(mobile, customer, explain=False, max_offers=1)
    for_staff = await decide(admin, customer, explain=False, max_offers=1)

    # Propensity and value are what the bank reckons of the customer: the staff's view only.
    assert [field.name for field, _ in for_the_app.decisions[0].ListFields()] == [
        "offer_id",
        "rank",
        "decision_id",
        "offer_version",
        "names",
        "category",
        "product_code",
    ]
    assert for_staff.decisions[0].HasField("factors")


async def test_a_customer_token_asking_to_explain_is_denied_and_nothing_is_logged(
    stack: Stack,
) -> None:
    admin, customer, mobile = await app_customer(stack)

    error = await refused(decide(mobile, customer, explain=True))

    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await log_of(admin, customer) == []


async def test_staff_tokens_decide_on_the_channel_they_name(stack: Stack) -> None:
    admin = stack.api()
    await create(admin, app_offer("branch_only", channels=[offers_pb2.CHANNEL_BRANCH]))
    customer = party()
    teller = stack.api(["branch_teller"])

    answer: pb.DecideOffersResponse = await teller.DecideOffers(
        pb.DecideOffersRequest(party_id=customer, channel=offers_pb2.CHANNEL_BRANCH, max_offers=5),
        timeout=10,
    )

    assert chosen(answer) == ["branch_only"]


async def test_a_customer_token_claiming_another_channel_is_audited_as_refused(
    stack: Stack,
) -> None:
    customer = party()
    mobile = stack.api(["channel_app"], party_id=customer)

    await refused(
        mobile.DecideOffers(
            pb.DecideOffersRequest(party_id=customer, channel=offers_pb2.CHANNEL_BRANCH),
            timeout=10,
        )
    )

    audited = [
        (e.method.rsplit("/", 1)[-1], e.party_id, e.outcome)
        for e in await stack.service.audit.read(party_id=customer)
    ]
    assert audited == [("DecideOffers", customer, "PERMISSION_DENIED")]
