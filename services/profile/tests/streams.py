"""Streams of the services the profile follows, for tests that do not run their producer: the
profile's consumers wait for each stream, so a test declares it as its producer would."""

from __future__ import annotations

import nats
from nats.aio.client import Client

NOTIFICATIONS_STREAM = "ZHIKE_NOTIFICATIONS"
NOTIFICATIONS_SUBJECTS = ["zhike.notifications.v1.>"]


async def declare_notifications_stream(client: Client) -> None:
    """Notifications' stream (consumed as `profile-notifications`)."""
    await client.jetstream().add_stream(name=NOTIFICATIONS_STREAM, subjects=NOTIFICATIONS_SUBJECTS)


async def declare_notifications_stream_at(nats_url: str) -> None:
    client = await nats.connect(nats_url)
    try:
        await declare_notifications_stream(client)
    finally:
        await client.close()
