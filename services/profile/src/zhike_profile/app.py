"""Composition root: settings → database → repositories → use cases → handlers."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from zoneinfo import ZoneInfo

from zhike.profile.v1 import profile_service_pb2
from zhike_profile.config import config_files, load_assessment_config
from zhike_profile.domain.service import Facts, ProfileClock, ProfileQueries, ProfileUpdates
from zhike_profile.settings import ProfileSettings
from zhike_profile.storage.repository import SqlProfileReads, SqlProfileUnitOfWork
from zhike_profile.transport import codec, source_codec
from zhike_profile.transport.event_handlers import (
    SOURCE_STREAM,
    identity_consumer,
    notifications_consumer,
    source_consumer,
)
from zhike_profile.transport.grpc_handlers import ProfileHandlers
from zhike_profile.transport.time_watch import TimeWatch
from zhike_runtime.app import Platform, ServiceDefinition, Wiring
from zhike_runtime.events.bus import StreamSpec

SERVICE_NAME = profile_service_pb2.DESCRIPTOR.services_by_name["ProfileService"].full_name
# The profile's own events (ProfileChanged).
STREAM = StreamSpec("ZHIKE_PROFILE", (f"{codec.SUBJECT_PREFIX}.>",))
# The source systems' facts: published by their adapters and by IngestSourceEvents.
SOURCES = StreamSpec(SOURCE_STREAM, (f"{source_codec.SUBJECT_PREFIX}.>",))


def assessment_basis(settings: ProfileSettings) -> str:
    """What a profile's assessment depends on besides its facts and the day: the configuration
    files, the bank's time zone and this service's code. A read model assessed on another
    basis (before a new FX rate file or a new release) is not served: GetProfile assesses
    afresh (zhike_profile.domain.read_model)."""
    digest = hashlib.sha256(settings.business_time_zone.encode())
    for name, path in sorted(config_files(settings.assessment_config_dir).items()):
        digest.update(f"\0{name}\0".encode() + path.read_bytes())
    package = Path(__file__).resolve().parent
    for source in sorted(package.rglob("*.py")):
        digest.update(f"\0{source.relative_to(package)}\0".encode() + source.read_bytes())
    return digest.hexdigest()[:32]


def wire(platform: Platform[ProfileSettings]) -> Wiring:
    settings = platform.settings
    # A bad configuration file stops the service here, naming every problem.
    config = load_assessment_config(settings.assessment_config_dir)
    clock = ProfileClock(ZoneInfo(settings.business_time_zone), lambda: dt.datetime.now(dt.UTC))
    facts = Facts(config, clock, assessment_basis(settings))
    updates = ProfileUpdates(facts)

    def unit_of_work() -> SqlProfileUnitOfWork:
        return SqlProfileUnitOfWork(platform.database, codec.outgoing_event, platform.relay.notify)

    reads = SqlProfileReads(platform.database)
    queries = ProfileQueries(
        reads, facts, platform.page_tokens, settings.max_page_size, snapshots=reads.snapshot
    )
    handlers = ProfileHandlers(
        queries,
        platform.bus,
        zone=clock.zone,
        publish_timeout_seconds=settings.outbox_publish_timeout_seconds,
    )
    time_watch = TimeWatch(
        updates,
        unit_of_work,
        risk_expiry_seconds=settings.risk_expiry_check_seconds,
        daily_refresh_seconds=settings.daily_refresh_check_seconds,
    )
    return Wiring(
        grpc_registrations=[handlers.register],
        consumers=[
            identity_consumer(updates, unit_of_work),
            source_consumer(updates, unit_of_work, clock.now, clock.zone),
            # Notifications' stream: the profile is ready once notifications declared it.
            notifications_consumer(updates, unit_of_work),
        ],
        background={
            "risk-expiry": time_watch.run_risk_expiry,
            "daily-refresh": time_watch.run_daily_refresh,
        },
    )


DEFINITION = ServiceDefinition(
    name="profile",
    settings_type=ProfileSettings,
    grpc_service_names=(SERVICE_NAME,),
    migrations=Path(__file__).resolve().parent / "storage" / "migrations",
    stream=STREAM,
    extra_streams=(SOURCES,),
    wire=wire,
)
