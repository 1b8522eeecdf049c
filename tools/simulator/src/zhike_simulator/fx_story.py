"""`zhike fx-story`: the FX story, played for one fresh customer against a running stack
(`make run`), told as it happens (issue 13: "a newcomer can see the SMS the FX story would have
sent, and see that it was not sent after the USD was gone").

    zhike fx-story                              # the local stack, its development issuer
    zhike fx-story --time-zone Etc/GMT-8        # the customer lives in that zone

A customer with a phone, consent to marketing SMS (text mkt-sms-2026-01), a valid C3 risk
assessment and a USD savings account receives USD 6,000: offers decides the USD wealth offer,
notifications sends its SMS to the local gateway, or defers it (quiet hours, the marketing
window, a rest day). Then the USD leaves: offers withdraws the decision, and a deferred SMS is
cancelled, never sent; a sent one stays sent, and no second SMS follows.

Every run links a new source record (its own id, phone and event ids), so runs do not meet.
Output goes to the terminal only; the phone is printed masked. Nothing is logged.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp
from google.type import date_pb2
from rich.console import Console
from rich.markup import escape

from zhike.identity.v1 import identity_service_pb2 as identity_pb
from zhike.identity.v1 import identity_service_pb2_grpc as identity_grpc
from zhike.identity.v1 import party_pb2
from zhike.notifications.v1 import notifications_pb2 as notification_model
from zhike.notifications.v1 import notifications_service_pb2 as notifications_pb
from zhike.notifications.v1 import notifications_service_pb2_grpc as notifications_grpc
from zhike.offers.v1 import offers_service_pb2 as offers_pb
from zhike.offers.v1 import offers_service_pb2_grpc as offers_grpc
from zhike.profile.v1 import profile_service_pb2 as profile_pb
from zhike.profile.v1 import profile_service_pb2_grpc as profile_grpc
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_runtime.auth.client import BearerToken
from zhike_runtime.auth.commands import ISSUER_DIRECTORY
from zhike_runtime.auth.development import KEY_FILE, DevelopmentIssuer
from zhike_runtime.masking import mask_phone
from zhike_runtime.tls import add_client_tls_arguments, client_credentials, open_channel

# Writing: LinkSourceRecord and IngestSourceEvents, as core deposits' adapter would.
SOURCE_ROLES = ("source_system",)
# Watching: the profile (has the consent arrived?), offers' decision log (was the decision
# withdrawn?) and the notifications (what became of the SMS?), never unmasked data.
READER_ROLES = ("call_centre_agent", "auditor")
SOURCE_SYSTEM = "core_deposits"
CONSENT_TEXT = "mkt-sms-2026-01"
USD_6000 = 600_000  # minor units
# The zone notifications assumes for a customer who has set none (its default_time_zone).
DEFAULT_ZONE = "Asia/Shanghai"
# `make run`'s notifications settings (marketing_window_start/end, default_quiet_hours): the
# reason printed for a deferral is read from them; the deferral itself is the service's.
MARKETING_WINDOW = (dt.time(9), dt.time(20))
QUIET_HOURS = (dt.time(21), dt.time(8))
NAMES = ("陈思远", "王雨桐", "李明哲", "赵欣然", "孙浩宇", "周婉清")

Status = notification_model.NotificationStatus
SENT_STATUSES = (
    notification_model.NOTIFICATION_STATUS_SENT,
    notification_model.NOTIFICATION_STATUS_DELIVERED,
)
SETTLED_STATUSES = (
    *SENT_STATUSES,
    notification_model.NOTIFICATION_STATUS_DEFERRED,
    notification_model.NOTIFICATION_STATUS_SUPPRESSED,
    notification_model.NOTIFICATION_STATUS_FAILED,
    notification_model.NOTIFICATION_STATUS_CANCELLED,
)


class StoryFailed(Exception):
    """The story could not be played to its end (a service did not answer or did not act in
    time); the message names the step, never the customer's data."""


@dataclass(frozen=True)
class Targets:
    identity: str
    profile: str
    offers: str
    notifications: str


@dataclass(frozen=True)
class Outcome:
    """What happened: the notification's status after the USD arrived and after it left, and
    the SMS the local gateway holds for the party."""

    party_id: str
    notification_id: str
    first: str  # a NotificationStatus name, e.g. "NOTIFICATION_STATUS_SENT"
    last: str
    sms_files: tuple[Path, ...]


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "fx-story",
        help="play the FX story for a fresh customer on a running stack (`make run`): USD "
        "arrives, the SMS is sent or deferred; the USD leaves, a deferred SMS is cancelled",
    )
    parser.add_argument("--identity-target", default="127.0.0.1:50051", help="identity HOST:PORT")
    parser.add_argument("--profile-target", default="127.0.0.1:50052", help="profile HOST:PORT")
    parser.add_argument("--offers-target", default="127.0.0.1:50053", help="offers HOST:PORT")
    parser.add_argument(
        "--notifications-target", default="127.0.0.1:50054", help="notifications HOST:PORT"
    )
    add_client_tls_arguments(parser)
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("ZHIKE_DEV_STATE_DIR", ".zhike")),
        help="the local stack's state directory: its development issuer mints the tokens, "
        "its gateways/sms/ holds the SMS (default $ZHIKE_DEV_STATE_DIR or .zhike)",
    )
    parser.add_argument(
        "--time-zone",
        help=f"the customer's IANA time zone, set as the customer's preference (default: none "
        f"set, notifications assumes {DEFAULT_ZONE})",
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for each step at most"
    )
    parser.set_defaults(func=_fx_story)


def _fx_story(args: argparse.Namespace) -> int:
    if args.time_zone is not None:
        try:
            ZoneInfo(args.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            sys.stderr.write(f"zhike fx-story: unknown time zone {args.time_zone!r}\n")
            return 2
    try:
        credentials = client_credentials(args)
        source_token, reader_token = _tokens(args.state_dir)
    except (OSError, ValueError) as error:
        sys.stderr.write(f"zhike fx-story: {error}\n")
        return 2
    targets = Targets(
        args.identity_target, args.profile_target, args.offers_target, args.notifications_target
    )
    try:
        asyncio.run(
            play(
                targets,
                source_token=source_token,
                reader_token=reader_token,
                state_dir=args.state_dir,
                time_zone=args.time_zone,
                credentials=credentials,
                timeout=args.timeout,
            )
        )
    except StoryFailed as error:
        sys.stderr.write(f"zhike fx-story: {error}\n")
        return 1
    except grpc.aio.AioRpcError as error:
        # Codes and the service's own details: no personal data travels in them.
        sys.stderr.write(f"zhike fx-story: {error.code().name}: {error.details()}\n")
        return 1
    return 0


def _tokens(state_dir: Path) -> tuple[str, str]:
    """Tokens from the local stack's development issuer (`make run` makes it)."""
    if os.environ.get("ZHIKE_PROFILE", "") == "production":
        raise ValueError("development tokens are refused with ZHIKE_PROFILE=production")
    directory = state_dir / ISSUER_DIRECTORY
    if not (directory / KEY_FILE).exists():
        raise ValueError(f"no development issuer in {directory}: start `make run` first")
    issuer = DevelopmentIssuer(directory)
    return (
        issuer.mint(list(SOURCE_ROLES), subject="zhike-fx-story", ttl_seconds=3600),
        issuer.mint(list(READER_ROLES), subject="zhike-fx-story", ttl_seconds=3600),
    )


# --- the story -------------------------------------------------------------------------------


async def play(
    targets: Targets,
    *,
    source_token: str,
    reader_token: str,
    state_dir: Path,
    time_zone: str | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    timeout: float = 60.0,
    console: Console | None = None,
) -> Outcome:
    """Plays the story for a new customer, printing each step to `console` (stdout by
    default); returns what happened. Raises StoryFailed when a step does not happen in time."""
    out = console or Console(highlight=False)
    customer = _Customer.new()
    zone = ZoneInfo(time_zone or DEFAULT_ZONE)

    def writer(target: str) -> grpc.aio.Channel:
        return open_channel(target, credentials, interceptors=[BearerToken(source_token)])

    def reader(target: str) -> grpc.aio.Channel:
        return open_channel(target, credentials, interceptors=[BearerToken(reader_token)])

    async with (
        writer(targets.identity) as identity,
        writer(targets.profile) as profile_in,
        reader(targets.profile) as profile_out,
        reader(targets.offers) as offers,
        reader(targets.notifications) as notifications,
    ):
        watch = _Watch(profile_out, offers, notifications, timeout)
        linked: identity_pb.LinkSourceRecordResponse = await identity_grpc.IdentityServiceStub(
            identity
        ).LinkSourceRecord(
            identity_pb.LinkSourceRecordRequest(source_record=customer.record()), timeout=10
        )
        party_id = linked.party_id
        out.print(
            f"[bold]1.[/] A customer of {SOURCE_SYSTEM} (record {customer.record_id}, phone "
            f"{mask_phone(customer.e164)}) is party {party_id}: consent to marketing SMS "
            f"({CONSENT_TEXT}), risk C3, a USD savings account"
            + (f", time zone {time_zone}" if time_zone else "")
            + "."
        )
        await _ingest(profile_in, customer.before_usd(time_zone))
        await watch.until(lambda: watch.consent_known(party_id), "the profile to show the consent")

        await _ingest(profile_in, [customer.usd(2, USD_6000, USD_6000)])
        out.print("[bold]2.[/] USD 6,000 arrives.")
        first = await watch.settled_notification(party_id)
        first_name = Status.Name(first.status)
        out.print(
            f"   Offers decided {first.offer_id or 'an offer'} (decision {first.decision_id}); "
            f"notification {first.notification_id}: [bold]{_short(first_name)}[/]"
        )
        _tell_first(out, first, state_dir, zone)

        await _ingest(profile_in, [customer.usd(3, -USD_6000, 0)])
        out.print("[bold]3.[/] The USD leaves (balance 0).")
        if first.status == notification_model.NOTIFICATION_STATUS_DEFERRED:
            last = await watch.status_becomes(
                first.notification_id, notification_model.NOTIFICATION_STATUS_CANCELLED
            )
        else:
            await watch.until(
                lambda: watch.withdrawn(party_id, first.decision_id),
                "offers to withdraw the decision",
            )
            last = await watch.notification(first.notification_id)
        sms_files = _sms_files(state_dir, await watch.notification_ids(party_id))
        last_name = Status.Name(last.status)
        out.print(
            f"   Offers withdrew decision {first.decision_id}; notification "
            f"{last.notification_id}: [bold]{_short(last_name)}[/]"
        )
        _tell_last(out, first, last, sms_files)
    return Outcome(party_id, first.notification_id, first_name, last_name, tuple(sms_files))


def _short(status_name: str) -> str:
    return status_name.removeprefix("NOTIFICATION_STATUS_")


def _tell_first(
    out: Console,
    notification: notification_model.Notification,
    state_dir: Path,
    zone: ZoneInfo,
) -> None:
    if notification.status in SENT_STATUSES:
        paths = _sms_files(state_dir, [notification.notification_id])
        if not paths:
            out.print("   (the SMS is not under the gateway directory given: another --state-dir?)")
            return
        path = paths[0]
        sms = json.loads(path.read_text(encoding="utf-8"))
        out.print(f"   The SMS, as the local gateway stored it in {path}:")
        out.print(f"     to   {escape(mask_phone(str(sms.get('to', ''))))}")
        out.print(f"     text {escape(str(sms.get('text', '')))}")
    elif notification.status == notification_model.NOTIFICATION_STATUS_DEFERRED:
        until = notification.deferred_until.ToDatetime(dt.UTC).astimezone(zone)
        now = dt.datetime.now(zone)
        out.print(
            f"   DEFERRED until {until:%Y-%m-%d %H:%M} ({zone.key}, {until:%A}): "
            f"{why_deferred(now, until)}. It is held, not sent."
        )
    elif notification.status == notification_model.NOTIFICATION_STATUS_SUPPRESSED:
        reason = notification_model.SuppressionReason.Name(notification.suppression.reason)
        out.print(f"   Refused by a gate: {reason}: {escape(notification.suppression.detail)}")
    elif notification.status == notification_model.NOTIFICATION_STATUS_FAILED:
        out.print(f"   The provider failed it: {escape(notification.failure)}")


def _tell_last(
    out: Console,
    first: notification_model.Notification,
    last: notification_model.Notification,
    sms_files: Sequence[Path],
) -> None:
    if first.status == notification_model.NOTIFICATION_STATUS_DEFERRED:
        if last.status == notification_model.NOTIFICATION_STATUS_CANCELLED:
            out.print(
                "   The deferred SMS was cancelled by the withdrawal "
                f"({last.cancelled_by_decision_id}): it was never sent, and the gateway holds "
                f"{len(sms_files)} SMS for this customer."
            )
    elif first.status in SENT_STATUSES:
        out.print(
            "   The SMS had already gone before the USD left: it stays sent, and no second SMS "
            f"follows (the gateway holds {len(sms_files)} SMS for this customer)."
        )


def why_deferred(now: dt.datetime, until: dt.datetime) -> str:
    """Which of `make run`'s rules holds a marketing SMS now (both times in the customer's
    zone): quiet hours, the marketing window, or a day that is not a working day."""
    start, end = MARKETING_WINDOW
    quiet_start, quiet_end = QUIET_HOURS
    clock = now.time()
    reasons = []
    if clock >= quiet_start or clock < quiet_end:
        reasons.append(
            f"it is {clock:%H:%M}, inside the default quiet hours "
            f"({quiet_start:%H:%M}-{quiet_end:%H:%M})"
        )
    elif not start <= clock < end:
        reasons.append(
            f"it is {clock:%H:%M}, outside the marketing window ({start:%H:%M}-{end:%H:%M})"
        )
    if now.weekday() >= 5:
        reasons.append(f"today ({now:%A}) is a rest day")
    elif not reasons and until.date() > now.date():
        reasons.append(f"today ({now:%A}) is not a working day (a public holiday)")
    if not reasons:
        reasons.append("the customer's quiet hours or calendar hold it")
    return "; ".join(reasons) + " — marketing SMS go out on working days only, in the window"


# --- the customer ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Customer:
    """One run's customer: its own record id, phone and event ids."""

    record_id: str
    phone: str  # as core deposits holds it, national format
    name: str

    @classmethod
    def new(cls) -> _Customer:
        chooser = random.SystemRandom()
        return cls(
            record_id=f"FX-{uuid.uuid4().hex[:12].upper()}",
            phone="139" + "".join(str(chooser.randrange(10)) for _ in range(8)),
            name=chooser.choice(NAMES),
        )

    @property
    def e164(self) -> str:
        return f"+86{self.phone}"

    @property
    def account_id(self) -> str:
        return f"{self.record_id}-USD"

    def record(self) -> party_pb2.SourceRecord:
        return party_pb2.SourceRecord(
            key=party_pb2.SourceRecordKey(
                source_system=SOURCE_SYSTEM, source_record_id=self.record_id
            ),
            full_name=self.name,
            phone=self.phone,
        )

    def fact(self, name: str, sequence: int, **fact: Any) -> source_pb.SourceEvent:
        stamp = Timestamp()
        stamp.FromDatetime(dt.datetime.now(dt.UTC))
        return source_pb.SourceEvent(
            source_record=party_pb2.SourceRecordKey(
                source_system=SOURCE_SYSTEM, source_record_id=self.record_id
            ),
            event_id=f"{self.record_id}-{name}",
            event_time=stamp,
            sequence=sequence,
            **fact,
        )

    def before_usd(self, time_zone: str | None) -> list[source_pb.SourceEvent]:
        """What core deposits knows before any USD arrives (tests/integration/source_systems.py
        `fx_customer`): consent given at a branch a month ago, a valid C3 risk assessment, a
        USD savings account; and the customer's time zone when one is given."""
        now = dt.datetime.now(dt.UTC)
        today = now.date()
        consent_time = Timestamp()
        consent_time.FromDatetime(now - dt.timedelta(days=30))
        events = [
            self.fact(
                "consent-sms",
                1,
                consent_given=source_pb.ConsentGiven(
                    channel=source_pb.CONTACT_CHANNEL_SMS,
                    purpose=source_pb.CONTACT_PURPOSE_MARKETING,
                    evidence=source_pb.ConsentEvidence(
                        captured_where="branch 0101",
                        capture_time=consent_time,
                        text_version=CONSENT_TEXT,
                    ),
                ),
            ),
            self.fact(
                "risk",
                1,
                risk_assessment_completed=source_pb.RiskAssessmentCompleted(
                    customer_risk=source_pb.CUSTOMER_RISK_C3,
                    assess_date=_day(today - dt.timedelta(days=10)),
                    expire_date=_day(today + dt.timedelta(days=355)),
                ),
            ),
            self.fact(
                "open",
                1,
                account_opened=source_pb.AccountOpened(
                    account_id=self.account_id,
                    product_line=source_pb.PRODUCT_LINE_SAVINGS,
                    product_code="SAV-USD",
                    currency="USD",
                    branch_code="0101",
                    open_date=_day(dt.date(2024, 3, 1)),
                ),
            ),
        ]
        if time_zone:
            events.append(
                self.fact(
                    "preferences",
                    1,
                    preference_changed=source_pb.PreferenceChanged(
                        language="zh-CN", time_zone=time_zone
                    ),
                )
            )
        return events

    def usd(self, sequence: int, change: int, after: int) -> source_pb.SourceEvent:
        return self.fact(
            f"usd-{sequence}",
            sequence,
            balance_changed=source_pb.BalanceChanged(
                account_id=self.account_id,
                currency="USD",
                change_minor_units=change,
                balance_minor_units=after,
            ),
        )


def _day(value: dt.date) -> date_pb2.Date:
    return date_pb2.Date(year=value.year, month=value.month, day=value.day)


async def _ingest(channel: grpc.aio.Channel, events: Sequence[source_pb.SourceEvent]) -> None:
    await profile_grpc.ProfileServiceStub(channel).IngestSourceEvents(
        profile_pb.IngestSourceEventsRequest(events=events), timeout=10
    )


def _sms_files(state_dir: Path, notification_ids: Sequence[str]) -> list[Path]:
    """The local gateway's SMS files whose out_id (the notification id) is one of these."""
    directory = state_dir / "gateways" / "sms"
    wanted = set(notification_ids)
    if not directory.exists():
        return []
    found = []
    for path in sorted(directory.glob("*.json")):
        if path.name.startswith("."):
            continue
        if json.loads(path.read_text(encoding="utf-8")).get("out_id") in wanted:
            found.append(path)
    return found


# --- watching the services ---------------------------------------------------------------------


class _Watch:
    """Polls the services' read APIs until what the story waits for has happened."""

    def __init__(
        self,
        profile: grpc.aio.Channel,
        offers: grpc.aio.Channel,
        notifications: grpc.aio.Channel,
        timeout: float,
    ) -> None:
        self._profile = profile_grpc.ProfileServiceStub(profile)
        self._offers = offers_grpc.OffersServiceStub(offers)
        self._notifications = notifications_grpc.NotificationsServiceStub(notifications)
        self._timeout = timeout

    async def until(self, check: Callable[[], Awaitable[bool]], waiting_for: str) -> None:
        deadline = asyncio.get_running_loop().time() + self._timeout
        while not await check():
            if asyncio.get_running_loop().time() > deadline:
                raise StoryFailed(f"gave up after {self._timeout:.0f} s waiting for {waiting_for}")
            await asyncio.sleep(0.2)

    async def consent_known(self, party_id: str) -> bool:
        try:
            answer: profile_pb.GetProfileResponse = await self._profile.GetProfile(
                profile_pb.GetProfileRequest(
                    party_id=party_id, read_mask=FieldMask(paths=["consents"])
                ),
                timeout=5,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:  # the events are not applied yet
                return False
            raise
        return any(
            consent.given
            and consent.channel == source_pb.CONTACT_CHANNEL_SMS
            and consent.purpose == source_pb.CONTACT_PURPOSE_MARKETING
            for consent in answer.profile.consents
        )

    async def notifications_of(self, party_id: str) -> list[notification_model.Notification]:
        answer: notifications_pb.ListNotificationsResponse = (
            await self._notifications.ListNotifications(
                notifications_pb.ListNotificationsRequest(party_id=party_id, page_size=50),
                timeout=5,
            )
        )
        return list(answer.notifications)

    async def notification_ids(self, party_id: str) -> list[str]:
        return [n.notification_id for n in await self.notifications_of(party_id)]

    async def settled_notification(self, party_id: str) -> notification_model.Notification:
        """The party's offer notification once the dispatcher has acted on it."""
        found: list[notification_model.Notification] = []

        async def settled() -> bool:
            found[:] = [
                n
                for n in await self.notifications_of(party_id)
                if n.decision_id and n.status in SETTLED_STATUSES
            ]
            return bool(found)

        await self.until(settled, "offers to decide and notifications to act")
        return found[0]

    async def notification(self, notification_id: str) -> notification_model.Notification:
        answer: notifications_pb.GetNotificationResponse = (
            await self._notifications.GetNotification(
                notifications_pb.GetNotificationRequest(notification_id=notification_id),
                timeout=5,
            )
        )
        return answer.notification

    async def status_becomes(
        self, notification_id: str, status: notification_model.NotificationStatus.ValueType
    ) -> notification_model.Notification:
        async def reached() -> bool:
            return (await self.notification(notification_id)).status == status

        await self.until(reached, f"the notification to become {_short(Status.Name(status))}")
        return await self.notification(notification_id)

    async def withdrawn(self, party_id: str, decision_id: str) -> bool:
        answer: offers_pb.ListDecisionsResponse = await self._offers.ListDecisions(
            offers_pb.ListDecisionsRequest(party_id=party_id, page_size=50), timeout=5
        )
        return any(
            withdrawn.decision_id == decision_id
            for entry in answer.entries
            for withdrawn in entry.withdrawn
        )
