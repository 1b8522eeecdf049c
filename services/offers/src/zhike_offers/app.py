"""Composition root: settings → database → caches → use cases → handlers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from zhike.offers.v1 import offers_service_pb2
from zhike_offers.catalogue import load_catalogue
from zhike_offers.domain.eligibility import RuleEnvironment
from zhike_offers.domain.service import (
    Arbiter,
    CatalogueAdmin,
    CatalogueCache,
    NotificationReactions,
    OfferDecisions,
    OfferExpiry,
    OffersClock,
    OutboundDecisions,
    OutboundSweep,
    ProfileReactions,
    PropensityCache,
    Retention,
)
from zhike_offers.settings import OffersSettings
from zhike_offers.storage.decision_store import decision_store
from zhike_offers.storage.repository import SqlOffersUnitOfWork
from zhike_offers.transport import event_codec
from zhike_offers.transport.event_handlers import notifications_consumer, profile_consumer
from zhike_offers.transport.grpc_handlers import OffersHandlers
from zhike_runtime.app import Platform, ServiceDefinition, Wiring
from zhike_runtime.background import closing_at_shutdown, every
from zhike_runtime.events.bus import StreamSpec

SERVICE_NAME = offers_service_pb2.DESCRIPTOR.services_by_name["OffersService"].full_name
# The offers' own events (OfferDecided, OfferWithdrawn).
STREAM = StreamSpec("ZHIKE_OFFERS", (f"{event_codec.SUBJECT_PREFIX}.>",))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def wire(platform: Platform[OffersSettings]) -> Wiring:
    settings = platform.settings
    # One rule environment per process (~80 ms); a bad catalogue file stops the service here,
    # naming every problem.
    environment = RuleEnvironment()
    defaults = load_catalogue(environment, settings.catalogue_dir)
    config = settings.decision_config()
    clock = OffersClock(_now, ZoneInfo(settings.business_time_zone))

    def unit_of_work() -> SqlOffersUnitOfWork:
        return SqlOffersUnitOfWork(
            platform.database, event_codec.outgoing_event, platform.relay.notify
        )

    # DecideOffers' reads and log entries (concurrent decisions' entries share a commit).
    store = decision_store(platform.database, unit_of_work, pool_size=settings.database_pool_size)

    catalogues = CatalogueCache(unit_of_work, environment, defaults, clock)
    models = PropensityCache(unit_of_work)
    arbiter = Arbiter(config)
    outbound = OutboundDecisions(catalogues, models, arbiter, clock)
    decisions = OfferDecisions(
        unit_of_work,
        catalogues,
        models,
        arbiter,
        outbound,
        clock,
        decision_store=store,
        page_tokens=platform.page_tokens,
        max_page_size=settings.max_page_size,
        default_max_offers=settings.default_max_offers,
    )
    admin = CatalogueAdmin(
        unit_of_work,
        catalogues,
        models,
        outbound,
        clock,
        config,
        page_tokens=platform.page_tokens,
        max_page_size=settings.max_page_size,
        sample_size=settings.simulation_sample_size,
        max_sample_size=settings.simulation_max_sample_size,
    )
    expiry = OfferExpiry(unit_of_work, catalogues, outbound, clock)
    sweep = OutboundSweep(unit_of_work, outbound, clock, chunk=settings.sweep_chunk)
    retention = Retention(
        unit_of_work,
        catalogues,
        config,
        clock,
        decision_log_days=settings.decision_log_retention_days,
    )
    handlers = OffersHandlers(
        decisions,
        admin,
        max_page_size=settings.max_page_size,
        default_max_offers=settings.default_max_offers,
        max_sample_size=settings.simulation_max_sample_size,
        now=clock.now,
    )

    def consumer_unit_of_work() -> SqlOffersUnitOfWork:
        return SqlOffersUnitOfWork(
            platform.database,
            event_codec.outgoing_event,
            platform.relay.notify,
            before=outbound.ready,
        )

    reactions = ProfileReactions(catalogues, outbound, clock)
    return Wiring(
        grpc_registrations=[handlers.register],
        consumers=[
            profile_consumer(reactions, consumer_unit_of_work),
            notifications_consumer(NotificationReactions(catalogues), consumer_unit_of_work),
        ],
        background={
            "catalogue-refresh": every(
                settings.catalogue_refresh_seconds, "catalogue refresh", catalogues.refresh
            ),
            "propensity-refresh": every(
                settings.propensity_refresh_seconds, "propensity refresh", models.refresh
            ),
            "offer-expiry": every(
                settings.expiry_check_seconds, "offer expiry round", expiry.withdraw_expired
            ),
            "outbound-sweep": every(settings.sweep_check_seconds, "outbound sweep", sweep.sweep),
            "decision-retention": every(
                settings.retention_check_seconds, "retention round", retention.prune
            ),
            # Nothing to do but give the store's connections back when the service stops.
            "decision-connections": closing_at_shutdown(store.close),
        },
    )


DEFINITION = ServiceDefinition(
    name="offers",
    settings_type=OffersSettings,
    grpc_service_names=(SERVICE_NAME,),
    migrations=Path(__file__).resolve().parent / "storage" / "migrations",
    stream=STREAM,
    wire=wire,
)
