"""Composition root: settings → database → repositories → use cases → handlers."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from zhike.identity.v1 import identity_service_pb2
from zhike_identity.domain.explanations import LinkExplanations
from zhike_identity.domain.linking import Linking
from zhike_identity.domain.matching.model import default_model
from zhike_identity.domain.normalise import warm_up
from zhike_identity.domain.queries import PartyQueries
from zhike_identity.domain.stewardship import Stewardship
from zhike_identity.settings import IdentitySettings
from zhike_identity.storage import MIGRATIONS
from zhike_identity.storage.protection import RecordProtection
from zhike_identity.storage.repository import SqlIdentityUnitOfWork
from zhike_identity.transport import codec
from zhike_identity.transport.grpc_handlers import IdentityHandlers
from zhike_runtime.app import Platform, ServiceDefinition, Wiring
from zhike_runtime.crypto import field_keys
from zhike_runtime.events.bus import StreamSpec
from zhike_runtime.ids import new_id

STREAM = StreamSpec("ZHIKE_IDENTITY", (f"{codec.SUBJECT_PREFIX}.>",))
SERVICE_NAME = identity_service_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name


def wire(platform: Platform[IdentitySettings]) -> Wiring:
    warm_up()  # load the pinyin and OpenCC tables now, not in the first customer's request
    keys = field_keys(platform.settings)
    assert keys is not None  # IdentitySettings requires them
    protection = RecordProtection(keys)

    def unit_of_work() -> SqlIdentityUnitOfWork:
        return SqlIdentityUnitOfWork(
            platform.database, codec.outgoing_event, platform.relay.notify, protection
        )

    def clock() -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    zone = ZoneInfo(platform.settings.business_time_zone)
    model = default_model()
    handlers = IdentityHandlers(
        linking=Linking(unit_of_work, new_id, clock, model, zone=zone),
        queries=PartyQueries(unit_of_work, clock, zone=zone),
        explanations=LinkExplanations(unit_of_work, model),
        stewardship=Stewardship(
            unit_of_work,
            new_id,
            clock,
            page_tokens=platform.page_tokens,
            max_page_size=platform.settings.max_page_size,
        ),
    )
    return Wiring(grpc_registrations=[handlers.register])


DEFINITION = ServiceDefinition(
    name="identity",
    settings_type=IdentitySettings,
    grpc_service_names=(SERVICE_NAME,),
    migrations=MIGRATIONS,
    stream=STREAM,
    wire=wire,
)
