"""Notifications with everything it talks to, for the service's tests: one real nats-server,
identity and the profile (its party directory), the notifications service itself — all
in-process, real gRPC servers on SQLite — and the local SMS/push/SMTP gateways, real servers
storing what they receive under the test's directory.

Helpers speak to the services as a bank's systems would: link a source record at identity,
ingest consent and preference events at the profile, send through the notifications API.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import sqlalchemy as sa
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.type.timeofday_pb2 import TimeOfDay
from nats.aio.client import Client as NATS

from zhike.identity.v1 import identity_service_pb2, identity_service_pb2_grpc, party_pb2
from zhike.notifications.v1 import notifications_pb2 as model_pb
from zhike.notifications.v1 import notifications_service_pb2 as pb
from zhike.notifications.v1 import notifications_service_pb2_grpc as pb_grpc
from zhike.offers.v1 import events_pb2 as offers_events
from zhike.offers.v1 import offers_pb2
from zhike.profile.v1 import profile_pb2, profile_service_pb2, profile_service_pb2_grpc
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_identity.app import DEFINITION as IDENTITY
from zhike_notifications.app import DEFINITION as NOTIFICATIONS
from zhike_notifications.domain.model import Channel
from zhike_notifications.local_gateways import LocalGateways, running_gateways
from zhike_notifications.local_gateways.store import stored_records
from zhike_notifications.local_gateways.testing import local_providers
from zhike_profile.app import DEFINITION as PROFILE
from zhike_runtime.app import RunningService
from zhike_runtime.events.headers import CONTENT_TYPE, EVENT_ID, EVENT_TYPE, MSG_ID, PROTOBUF
from zhike_runtime.testing.processes import NatsServer, free_port
from zhike_runtime.testing.services import (
    TEST_SETTINGS,
    answer_or_none,
    authorised_channel,
    dispatcher_environment,
    eventually,
    process_environment,
    running_service,
    wait_serving,
)

PHONE = "+8613671829305"
EMAIL = "liu.xiaoyan@qq.com"
CONSENT_TEXT = "mkt-sms-2026-01"  # a text the shipped consent texts know: wealth, 4 in 30 days


def stamp(value: dt.datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(value)
    return result


class NotificationsProcess:
    """`python -m zhike_notifications` as an OS process, so that a test can kill it (-9) and
    start another on the same database; its log (JSON lines) goes to `<directory>/
    notifications-<n>.log`, one file per start."""

    def __init__(self, directory: Path, environment: Mapping[str, str]) -> None:
        self.directory = directory
        self.grpc_port = free_port()
        self._environment = dict(environment)
        self._process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.grpc_port = free_port()
        env = dict(os.environ) | self._environment | {"ZHIKE_GRPC_PORT": str(self.grpc_port)}
        with (self.directory / f"notifications-{self.starts}.log").open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "zhike_notifications"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last commit."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=30)
            self._process = None

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


def process_settings(settings: Mapping[str, Any]) -> dict[str, str]:
    """Settings as the ZHIKE_* variables a process reads (JSON for anything not a string)."""
    return {
        f"ZHIKE_{name.upper()}": value
        if isinstance(value, str)
        else str(value)
        if isinstance(value, Path)
        else json.dumps(value)
        for name, value in settings.items()
    }


@dataclass
class GatewayAnswer:
    """One answer the local HTTP gateway gave, from its log line."""

    out_id: str
    outcome: str  # "stored", "duplicate" or "fault"
    status: int


class GatewayAnswers(logging.Handler):
    """The local HTTP gateways' answers in this process, from their log lines: how many calls a
    gateway got for an out-id, whatever it answered."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.answers: list[GatewayAnswer] = []

    def emit(self, record: logging.LogRecord) -> None:
        out_id = getattr(record, "out_id", None)
        if out_id is None:
            return
        message = record.getMessage()
        if message == "gateway answered with a fault":
            self.answers.append(GatewayAnswer(out_id, "fault", int(getattr(record, "status", 0))))
        elif message == "gateway stored a message":
            self.answers.append(GatewayAnswer(out_id, "stored", 200))
        elif message == "gateway already had the message":
            self.answers.append(GatewayAnswer(out_id, "duplicate", 200))

    def of(self, out_id: str) -> list[GatewayAnswer]:
        return [answer for answer in self.answers if answer.out_id == out_id]


@contextmanager
def gateway_answers() -> Iterator[GatewayAnswers]:
    """Records the answers of every in-process local HTTP gateway for the block."""
    logger = logging.getLogger("zhike_notifications.local_gateways.http_gateway")
    handler = GatewayAnswers()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@dataclass
class Stack:
    identity: RunningService[Any]
    profile: RunningService[Any]
    # In-process, or a process (notifications_stack(..., as_process=True)) a test can kill.
    notifications: RunningService[Any] | NotificationsProcess
    gateways: LocalGateways
    state_dir: Path
    nats: NATS
    _sequence: int = 0
    # More in-process replicas on the notifications database (start_replica).
    replicas: list[RunningService[Any]] = field(default_factory=list)

    async def publish(self, subject: str, message: Message, event_id: str | None = None) -> None:
        """An event on offers' stream, as offers' relay publishes it (type and id headers)."""
        ident = event_id or str(uuid.uuid4())
        headers = {
            MSG_ID: ident,
            EVENT_ID: ident,
            EVENT_TYPE: message.DESCRIPTOR.full_name,
            CONTENT_TYPE: PROTOBUF,
        }
        await self.nats.jetstream().publish(subject, message.SerializeToString(), headers=headers)

    async def offer_decided(
        self,
        party_id: str,
        decision_id: str,
        *,
        offer_id: str = "usd_fx_wealth",
        template_id: str = "offer_usd_fx_wealth_sms_v1",
        channel: int = offers_pb2.CHANNEL_SMS,
        profile_version: int = 1,
        offer_valid_until: dt.datetime | None = None,
        decided_at: dt.datetime | None = None,
    ) -> None:
        await self.publish(
            "zhike.offers.v1.offer_decided",
            offers_events.OfferDecided(
                decision_id=decision_id,
                party_id=party_id,
                offer_id=offer_id,
                offer_version=1,
                channel=channel,  # type: ignore[arg-type]
                template_id=template_id,
                category=offers_pb2.OFFER_CATEGORY_MARKETING,
                decide_time=stamp(decided_at or dt.datetime.now(dt.UTC)),
                profile_version=profile_version,
                offer_valid_until=None if offer_valid_until is None else stamp(offer_valid_until),
            ),
        )

    async def offer_withdrawn(self, party_id: str, decision_id: str) -> None:
        await self.publish(
            "zhike.offers.v1.offer_withdrawn",
            offers_events.OfferWithdrawn(
                decision_id=decision_id,
                party_id=party_id,
                offer_id="usd_fx_wealth",
                reason=offers_pb2.WITHDRAW_REASON_INELIGIBLE,
                detail='eligibility[0] is false: assets["USD"] >= 5000.0',
                withdraw_time=stamp(dt.datetime.now(dt.UTC)),
                offer_version=1,
                profile_version=2,
            ),
        )

    def address(self, service: RunningService[Any] | NotificationsProcess) -> str:
        return f"127.0.0.1:{service.grpc_port}"

    async def consent_arrives(self, party_id: str, timeout: float = 20) -> None:
        """Waits until notifications' consent projection holds a decision for the party (the
        profile's ProfileChanged travels through NATS); in-process notifications only."""
        if isinstance(self.notifications, NotificationsProcess):
            raise TypeError("reads notifications' database: in-process only")
        database = self.notifications.database

        async def arrived() -> bool:
            async with database.session() as session:
                found = await session.execute(
                    sa.text("SELECT count(*) FROM consent WHERE party_id = :party"),
                    {"party": party_id},
                )
                return int(found.scalar_one()) > 0

        await eventually(arrived, timeout=timeout)

    async def restart_notifications(self) -> None:
        """Stops notifications (SIGTERM for a process) and starts it again on its database."""
        service = self.notifications
        if isinstance(service, NotificationsProcess):
            service.stop()
            service.start()
        else:
            await service.stop()
            self.notifications = RunningService(service.definition, service.settings)
            await self.notifications.start()
        await wait_serving(self.notifications.grpc_port, timeout=60)

    def kill_notifications(self) -> None:
        """kill -9 of the notifications process (as_process=True)."""
        if not isinstance(self.notifications, NotificationsProcess):
            raise TypeError("notifications runs in-process: start the stack with as_process=True")
        self.notifications.kill()

    async def start_notifications(self) -> None:
        """Starts the killed notifications process again, on the same database."""
        if not isinstance(self.notifications, NotificationsProcess):
            raise TypeError("notifications runs in-process: start the stack with as_process=True")
        self.notifications.start()
        await wait_serving(self.notifications.grpc_port, timeout=60)

    async def start_replica(self) -> RunningService[Any]:
        """One more in-process notifications replica on the same database and settings (a
        PostgreSQL database_url for two to share it), stopped when the stack ends."""
        if isinstance(self.notifications, NotificationsProcess):
            raise TypeError("replicas are in-process: start the stack without as_process")
        replica = RunningService(self.notifications.definition, self.notifications.settings)
        await replica.start()
        self.replicas.append(replica)
        await wait_serving(replica.grpc_port)
        return replica

    async def _stop_notifications(self) -> None:
        for replica in self.replicas:
            await replica.stop()
        if isinstance(self.notifications, NotificationsProcess):
            self.notifications.stop()
        else:
            await self.notifications.stop()

    def sms(self) -> list[dict[str, Any]]:
        return stored_records(self.state_dir, Channel.SMS)

    async def link(self, record_id: str, *, phone: str = "136 7182 9305") -> str:
        """A source record with a phone and an e-mail, linked at identity; its party id."""
        async with authorised_channel(self.address(self.identity)) as channel:
            response = await identity_service_pb2_grpc.IdentityServiceStub(
                channel
            ).LinkSourceRecord(
                identity_service_pb2.LinkSourceRecordRequest(
                    source_record=party_pb2.SourceRecord(
                        key=party_pb2.SourceRecordKey(
                            source_system="core", source_record_id=record_id
                        ),
                        full_name="刘晓燕",
                        phone=phone,
                        email=EMAIL,
                    )
                ),
                timeout=10,
            )
        return str(response.party_id)

    async def ingest(self, record_id: str, **fact: Any) -> None:
        self._sequence += 1
        event = source_pb.SourceEvent(
            source_record=party_pb2.SourceRecordKey(
                source_system="core", source_record_id=record_id
            ),
            event_id=f"{record_id}-{self._sequence}",
            event_time=stamp(dt.datetime.now(dt.UTC)),
            sequence=self._sequence,
            **fact,
        )
        async with authorised_channel(self.address(self.profile)) as channel:
            await profile_service_pb2_grpc.ProfileServiceStub(channel).IngestSourceEvents(
                profile_service_pb2.IngestSourceEventsRequest(events=[event]), timeout=10
            )

    async def give_consent(self, record_id: str, channel: int, purpose: int) -> None:
        await self.ingest(
            record_id,
            consent_given=source_pb.ConsentGiven(
                channel=channel,  # type: ignore[arg-type]
                purpose=purpose,  # type: ignore[arg-type]
                evidence=source_pb.ConsentEvidence(
                    captured_where="branch 0101",
                    capture_time=stamp(dt.datetime.now(dt.UTC)),
                    text_version=CONSENT_TEXT,
                ),
            ),
        )

    async def set_preferences(
        self,
        record_id: str,
        party_id: str,
        *,
        time_zone: str,
        quiet_hours: tuple[dt.time, dt.time] | None = None,
        language: str = "zh-CN",
    ) -> None:
        """PreferenceChanged from the mobile app; waits until the profile shows it."""
        preference = source_pb.PreferenceChanged(language=language, time_zone=time_zone)
        if quiet_hours is not None:
            start, end = quiet_hours
            preference.quiet_hours_start.CopyFrom(TimeOfDay(hours=start.hour, minutes=start.minute))
            preference.quiet_hours_end.CopyFrom(TimeOfDay(hours=end.hour, minutes=end.minute))
        await self.ingest(record_id, preference_changed=preference)
        preference_shown = profile_pb2.Preferences(
            language=preference.language, time_zone=preference.time_zone
        )
        if quiet_hours is not None:
            preference_shown.quiet_hours_start.CopyFrom(preference.quiet_hours_start)
            preference_shown.quiet_hours_end.CopyFrom(preference.quiet_hours_end)

        async def shown() -> bool:
            async with authorised_channel(self.address(self.profile)) as channel:
                answer = await answer_or_none(
                    profile_service_pb2_grpc.ProfileServiceStub(channel).GetProfile(
                        profile_service_pb2.GetProfileRequest(
                            party_id=party_id, read_mask=FieldMask(paths=["preferences"])
                        ),
                        timeout=5,
                    )
                )
            # Compared whole: the profile's defaults (zh-CN, Asia/Shanghai) may already match
            # before this event applies.
            return answer is not None and answer.profile.preferences == preference_shown

        await eventually(shown, timeout=20)

    async def send(
        self,
        party_id: str,
        template_id: str,
        *,
        channel: int = model_pb.NOTIFICATION_CHANNEL_SMS,
        category: int = model_pb.NOTIFICATION_CATEGORY_TRANSACTIONAL,
        key: str,
        values: Mapping[str, str] | None = None,
    ) -> pb.SendNotificationResponse:
        async with authorised_channel(
            self.address(self.notifications), roles=("messaging_system",)
        ) as grpc_channel:
            answer: pb.SendNotificationResponse = await pb_grpc.NotificationsServiceStub(
                grpc_channel
            ).SendNotification(
                pb.SendNotificationRequest(
                    party_id=party_id,
                    channel=channel,  # type: ignore[arg-type]
                    template_id=template_id,
                    idempotency_key=key,
                    category=category,  # type: ignore[arg-type]
                    values=dict(values or {}),
                ),
                timeout=10,
            )
        return answer

    async def notification(self, notification_id: str) -> model_pb.Notification:
        async with authorised_channel(
            self.address(self.notifications), roles=("messaging_system",)
        ) as grpc_channel:
            answer: pb.GetNotificationResponse = await pb_grpc.NotificationsServiceStub(
                grpc_channel
            ).GetNotification(
                pb.GetNotificationRequest(notification_id=notification_id), timeout=10
            )
        return answer.notification

    async def status_becomes(
        self, notification_id: str, status: int, timeout: float = 20
    ) -> model_pb.Notification:
        async def reached() -> bool:
            return (await self.notification(notification_id)).status == status

        await eventually(reached, timeout=timeout)
        return await self.notification(notification_id)


@asynccontextmanager
async def notifications_stack(
    nats_server: NatsServer,
    tmp_path: Path,
    *,
    as_process: bool = False,
    provider_timeout_seconds: float | None = None,
    **notifications_settings: Any,
) -> AsyncIterator[Stack]:
    """The stack; `notifications_settings` override notifications' (a `database_url` too:
    SQLite under `tmp_path` by default). `as_process`: notifications runs as an OS process
    (`python -m zhike_notifications`), for tests that kill it. `provider_timeout_seconds`: the
    local providers' time-out (under half a short `dispatch_lease_seconds`)."""
    state_dir = tmp_path / "gateways"
    async with AsyncExitStack() as stack:
        gateways = await stack.enter_async_context(running_gateways(state_dir))
        identity = await stack.enter_async_context(
            running_service(
                IDENTITY,
                database_url=f"sqlite+aiosqlite:///{tmp_path / 'identity.db'}",
                nats_url=nats_server.url,
            )
        )
        profile = await stack.enter_async_context(
            running_service(
                PROFILE,
                database_url=f"sqlite+aiosqlite:///{tmp_path / 'profile.db'}",
                nats_url=nats_server.url,
            )
        )
        # Offers' stream, as offers declares it: the tests publish its decisions themselves.
        client = await nats.connect(nats_server.url)
        stack.push_async_callback(client.close)
        await client.jetstream().add_stream(name="ZHIKE_OFFERS", subjects=["zhike.offers.v1.>"])
        providers: list[dict[str, Any]] = list(
            local_providers(gateways.http_url, gateways.smtp_port)
        )
        if provider_timeout_seconds is not None:
            providers = [p | {"timeout_seconds": provider_timeout_seconds} for p in providers]
        settings: dict[str, Any] = {
            "identity_address": f"127.0.0.1:{identity.grpc_port}",
            "profile_address": f"127.0.0.1:{profile.grpc_port}",
            "providers": providers,
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'notifications.db'}",
        } | notifications_settings
        notifications: RunningService[Any] | NotificationsProcess
        if as_process:
            # What the process reads from its environment instead (process_environment,
            # dispatcher_environment), and its port (NotificationsProcess picks one).
            in_process_only = {"auth_jwks_file", "service_token", "profile", "grpc_port"}
            test_settings = {k: v for k, v in TEST_SETTINGS.items() if k not in in_process_only}
            notifications = NotificationsProcess(
                tmp_path,
                process_settings(test_settings | {"nats_url": nats_server.url} | settings)
                | process_environment()
                | dispatcher_environment(settings["identity_address"], settings["profile_address"]),
            )
            notifications.start()
        else:
            notifications = RunningService(
                NOTIFICATIONS,
                NOTIFICATIONS.settings_type(
                    **(TEST_SETTINGS | {"nats_url": nats_server.url} | settings)
                ),
            )
            await notifications.start()
        running = Stack(identity, profile, notifications, gateways, state_dir, client)
        # Whichever instance is current when the block ends (restart_notifications replaces it).
        stack.push_async_callback(running._stop_notifications)
        for service in (identity, profile, notifications):
            await wait_serving(service.grpc_port, timeout=60)
        yield running


def dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)
