"""Composition root: settings → database → repositories → use cases → handlers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from zhike.identity.v1 import identity_service_pb2
from zhike_identity.domain.matching.model import default_model
from zhike_identity.domain.normalise import warm_up
from zhike_identity.domain.service import IdentityService
from zhike_identity.settings import IdentitySettings
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
    service = IdentityService(
        unit_of_work=lambda: SqlIdentityUnitOfWork(
            platform.database, codec.outgoing_event, platform.relay.notify, protection
        ),
        new_party_id=new_id,
        clock=lambda: dt.datetime.now(dt.UTC),
        model=default_model(),
        page_tokens=platform.page_tokens,
        max_page_size=platform.settings.max_page_size,
    )
    return Wiring(grpc_registrations=[IdentityHandlers(service).register])


DEFINITION = ServiceDefinition(
    name="identity",
    settings_type=IdentitySettings,
    grpc_service_names=(SERVICE_NAME,),
    migrations=Path(__file__).resolve().parent / "storage" / "migrations",
    stream=STREAM,
    wire=wire,
)
