"""Composition root: settings → database → templates, policy and providers → use cases →
handlers, consumers, the dispatcher and the webhook server."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from zhike.notifications.v1 import notifications_service_pb2
from zhike_notifications.calendars import load_calendar
from zhike_notifications.domain.model import Channel
from zhike_notifications.domain.service import (
    REQUEST_DIGEST_PURPOSE,
    Deliveries,
    DispatchConfig,
    Dispatcher,
    Intake,
    Queries,
    Retention,
    Templates,
)
from zhike_notifications.domain.unsubscribe_links import SIGNING_KEY_PURPOSE, unsubscribe_url
from zhike_notifications.http_server import HttpServer
from zhike_notifications.providers.base import Provider
from zhike_notifications.providers.email import SmtpProvider
from zhike_notifications.providers.gateway import ProviderSet
from zhike_notifications.providers.http import HttpProvider
from zhike_notifications.settings import NotificationsSettings, ProviderSettings
from zhike_notifications.storage.repository import SqlNotificationsUnitOfWork
from zhike_notifications.templates import load_templates
from zhike_notifications.transport import event_codec
from zhike_notifications.transport.directory import GrpcPartyDirectory
from zhike_notifications.transport.event_handlers import (
    dispatch_consumer,
    offers_consumer,
    profile_consumer,
)
from zhike_notifications.transport.grpc_handlers import NotificationsHandlers
from zhike_notifications.transport.webhook_signatures import SignatureVerifier
from zhike_notifications.transport.webhooks import webhook_app
from zhike_runtime.app import Platform, ServiceDefinition, Wiring
from zhike_runtime.background import closing_at_shutdown, every, while_working
from zhike_runtime.crypto import field_keys
from zhike_runtime.events.bus import StreamSpec

SERVICE_NAME = notifications_service_pb2.DESCRIPTOR.services_by_name[
    "NotificationsService"
].full_name
# The notifications' own events (NotificationSent/Delivered/Failed/Suppressed, ConsentWithdrawn).
STREAM = StreamSpec("ZHIKE_NOTIFICATIONS", (f"{event_codec.SUBJECT_PREFIX}.>",))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def provider(settings: ProviderSettings, email_sender: str) -> Provider:
    """A provider adapter from its settings (the URL's scheme says which protocol)."""
    if settings.channel == "email":
        scheme, rest = settings.url.split("://", 1)
        host, _, port = rest.rstrip("/").rpartition(":")
        implicit_tls = scheme == "smtps"
        return SmtpProvider(
            settings.name,
            host or rest,
            int(port) if port.isdigit() else (465 if implicit_tls else 25),
            email_sender,
            username=settings.username,
            password=settings.password.get_secret_value() if settings.password else None,
            use_tls=implicit_tls,
            timeout=settings.timeout_seconds,
        )
    return HttpProvider(
        settings.name,
        Channel(settings.channel),
        settings.url,
        api_key=settings.api_key.get_secret_value() if settings.api_key else None,
        timeout=settings.timeout_seconds,
    )


def serving_until_shutdown(server: HttpServer) -> Callable[[], Coroutine[Any, Any, None]]:
    async def loop() -> None:
        await server.start()
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    return loop


def wire(platform: Platform[NotificationsSettings]) -> Wiring:
    settings = platform.settings
    keys = field_keys(settings)
    assert keys is not None  # NotificationsSettings requires them
    # Templates, consent texts and the calendar are checked whole here: a bad one stops the
    # service, naming every problem.
    templates = Templates(load_templates(settings.templates_dir))
    config = DispatchConfig(
        gate_policy=settings.gate_policy(),
        calendar=load_calendar(settings.calendar_file),
        retry_policies={
            channel: settings.retry_policy(channel)
            for channel in (Channel.SMS, Channel.EMAIL, Channel.PUSH)
        },
        lease=dt.timedelta(seconds=settings.dispatch_lease_seconds),
        sms_signature=settings.sms_signature,
    )
    providers = ProviderSet(
        [provider(entry, settings.email_sender) for entry in settings.providers],
        {
            Channel.SMS: settings.providers_sms,
            Channel.EMAIL: settings.providers_email,
            Channel.PUSH: settings.providers_push,
        },
    )
    directory = GrpcPartyDirectory.from_settings(settings, platform.telemetry)
    link_key = (
        settings.unsubscribe_link_key.get_secret_value().encode()
        if settings.unsubscribe_link_key
        else keys.blind_index.signing_key(SIGNING_KEY_PURPOSE)
    )

    def unit_of_work() -> SqlNotificationsUnitOfWork:
        return SqlNotificationsUnitOfWork(
            platform.database, event_codec.outgoing_event, platform.relay.notify, keys
        )

    wake = asyncio.Event()
    # How long a decision's withdrawal is kept, and so how long after it was made a decision
    # may still be sent (Intake, Retention).
    decision_lifetime = dt.timedelta(seconds=settings.inbox_retention_seconds)
    intake = Intake(
        unit_of_work,
        templates,
        _now,
        on_new=wake.set,
        request_digest=keys.blind_index.purpose(REQUEST_DIGEST_PURPOSE),
        decision_lifetime=decision_lifetime,
        rate_limit=settings.rate_limit(),
    )
    dispatcher = Dispatcher(
        unit_of_work,
        templates,
        directory,
        providers,
        config,
        _now,
        unsubscribe_url=lambda ident: unsubscribe_url(settings.webhook_public_url, link_key, ident),
        batch_size=settings.dispatch_batch_size,
    )
    queries = Queries(
        unit_of_work,
        _now,
        page_tokens=platform.page_tokens,
        max_page_size=settings.max_page_size,
    )
    deliveries = Deliveries(unit_of_work, _now)
    retention = Retention(
        unit_of_work,
        _now,
        retention_days=settings.retention_days,
        inbox_message_retention_days=settings.inbox_message_retention_days,
        withdrawal_retention=decision_lifetime,
    )
    verifier = SignatureVerifier(
        {
            name: [secret.get_secret_value().encode() for secret in values]
            for name, values in settings.webhook_secrets.items()
        },
        tolerance=dt.timedelta(seconds=settings.webhook_tolerance_seconds),
    )
    webhooks = HttpServer(
        webhook_app(deliveries, verifier, unsubscribe_secret=link_key, now=_now),
        host=settings.webhook_host,
        port=settings.webhook_port,
    )

    async def close_adapters() -> None:
        await providers.aclose()
        await directory.close()

    return Wiring(
        grpc_registrations=[NotificationsHandlers(intake, queries).register],
        consumers=[
            offers_consumer(intake, unit_of_work),
            profile_consumer(intake, unit_of_work),
            dispatch_consumer(intake, unit_of_work),
        ],
        background={
            "dispatcher": while_working(
                "dispatch round", dispatcher.dispatch_due, wake, settings.dispatch_idle_seconds
            ),
            "retention": every(
                settings.retention_check_seconds, "retention round", retention.prune
            ),
            "webhooks": serving_until_shutdown(webhooks),
            "adapters": closing_at_shutdown(close_adapters),
        },
    )


DEFINITION = ServiceDefinition(
    name="notifications",
    settings_type=NotificationsSettings,
    grpc_service_names=(SERVICE_NAME,),
    migrations=Path(__file__).resolve().parent / "storage" / "migrations",
    stream=STREAM,
    wire=wire,
)
