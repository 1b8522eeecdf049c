"""The party directory over gRPC: identity's GetParty for where to reach the party (the unmasked
phone and e-mail: events never carry them, docs/events.md) and the profile's GetProfile for how
he wants to be reached (language, time zone, quiet hours), asked side by side with one deadline
each.

The calls carry a `notifications_dispatcher` token. Its `identity.party.read_pii` unmasks the
addresses, and identity audits every such read. A token without it gets masked values back
(`+86138****5678`); they are never passed on as addresses: the directory refuses them as it
refuses any call it may not make.

Which failures wait and which are a configuration to fix:
- identity NOT_FOUND: the party does not exist (None); profile NOT_FOUND: no preferences known.
- UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED: `DirectoryUnavailable`, the send
  waits and tries again.
- anything else (PERMISSION_DENIED, UNAUTHENTICATED, INVALID_ARGUMENT…), and masked addresses:
  `DirectoryUnavailable` as well, so that nothing is lost while it is fixed, and one error log
  line naming the service and the status code (never the party's data), logged again only after
  the directory has answered normally in between.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import re
import threading
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from google.type import timeofday_pb2

from zhike.identity.v1 import identity_service_pb2, identity_service_pb2_grpc, party_pb2
from zhike.profile.v1 import profile_pb2, profile_service_pb2, profile_service_pb2_grpc
from zhike_notifications.domain.ports import DirectoryUnavailable, PartyContact
from zhike_notifications.domain.quiet_hours import QuietHours
from zhike_notifications.settings import NotificationsSettings
from zhike_runtime.auth.client import BearerToken
from zhike_runtime.phones import PhoneUnreadable, parse_phone
from zhike_runtime.telemetry import Telemetry
from zhike_runtime.tls import channel_credentials, open_channel

log = logging.getLogger(__name__)

# What identity's audit log records as the reason for each unmasked read.
PURPOSE = "notification dispatch"

_TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)
# zhike_runtime.masking's e-mail shape: the first letter, "***", the domain.
_MASKED_EMAIL = re.compile(r"^[^@]?\*\*\*@")

T = TypeVar("T")


class DirectoryConfigurationError(ValueError):
    """The directory cannot be built from these settings (raised at start-up)."""


class ServiceToken:
    """The token the directory calls with: a literal (development) or a file, read again when
    it changes. A Kubernetes Secret volume swaps its files through a symlink, so the path's
    inode, size and modification time tell a rotation; a file unreadable for a moment mid-swap
    leaves the last token in use."""

    def __init__(self, *, token: str = "", path: Path | None = None) -> None:
        if bool(token) == (path is not None):
            raise DirectoryConfigurationError("give the token or its file, one of them")
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int, int] | None = None
        self._token = token
        if path is not None:
            try:
                self._reload(path)
            except OSError as error:
                raise DirectoryConfigurationError(
                    f"ZHIKE_SERVICE_TOKEN_FILE: cannot read {path}: {error.strerror}"
                ) from error
            if not self._token:
                raise DirectoryConfigurationError(f"ZHIKE_SERVICE_TOKEN_FILE: {path} is empty")

    @classmethod
    def from_settings(cls, settings: NotificationsSettings) -> ServiceToken:
        literal = settings.service_token.get_secret_value().strip()
        if settings.service_token_file is not None:
            return cls(path=settings.service_token_file)
        if literal:
            return cls(token=literal)
        raise DirectoryConfigurationError(
            "no token to call identity and the profile with: set ZHIKE_SERVICE_TOKEN_FILE "
            "(or ZHIKE_SERVICE_TOKEN in development) to a notifications_dispatcher token"
        )

    def current(self) -> str:
        if self.path is not None:
            try:
                self._reload(self.path)
            except OSError as error:
                log.warning(
                    "service token file unreadable; keeping the current token",
                    extra={"reason": error.strerror, "file": str(self.path)},
                )
        return self._token

    def _reload(self, path: Path) -> None:
        with self._lock:
            info = os.stat(path)
            seen = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
            if seen == self._seen:
                return
            token = path.read_text().strip()
            self._seen = seen
            if token:
                self._token = token
                log.info("service token read", extra={"file": str(path)})


@dataclass(frozen=True)
class _Refused:
    """A call the directory may not make as configured; logged once per service and code."""

    service: str
    code: str


class GrpcPartyDirectory:
    """`PartyDirectory` over identity's and the profile's gRPC APIs. Close it when done."""

    def __init__(
        self,
        identity_address: str,
        profile_address: str,
        token: ServiceToken,
        *,
        timeout_seconds: float = 2.0,
        credentials: grpc.ChannelCredentials | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        # Client spans (and the trace context the services continue) when telemetry is given.
        interceptors: list[grpc.aio.ClientInterceptor] = [
            *(telemetry.client_interceptors() if telemetry is not None else ()),
            BearerToken(token.current, purpose=PURPOSE),
        ]
        self._identity_channel = open_channel(
            identity_address, credentials, interceptors=interceptors
        )
        self._profile_channel = open_channel(
            profile_address, credentials, interceptors=interceptors
        )
        self._identity = identity_service_pb2_grpc.IdentityServiceStub(self._identity_channel)
        self._profile = profile_service_pb2_grpc.ProfileServiceStub(self._profile_channel)
        self._timeout = timeout_seconds
        # The refusals already logged, until the directory answers normally again.
        self._logged: set[_Refused] = set()

    @classmethod
    def from_settings(
        cls, settings: NotificationsSettings, telemetry: Telemetry | None = None
    ) -> GrpcPartyDirectory:
        """Raises DirectoryConfigurationError (naming the setting) when no token is configured."""
        token = ServiceToken.from_settings(settings)
        tls_files = (
            settings.directory_tls_ca_file,
            settings.directory_tls_cert_file,
            settings.directory_tls_key_file,
        )
        credentials = None
        if any(path is not None for path in tls_files):
            credentials = channel_credentials(
                ca_file=settings.directory_tls_ca_file,
                cert_file=settings.directory_tls_cert_file,
                key_file=settings.directory_tls_key_file,
            )
        return cls(
            settings.identity_address,
            settings.profile_address,
            token,
            timeout_seconds=settings.directory_timeout_seconds,
            credentials=credentials,
            telemetry=telemetry,
        )

    async def close(self) -> None:
        await asyncio.gather(self._identity_channel.close(), self._profile_channel.close())

    async def __aenter__(self) -> GrpcPartyDirectory:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def contact(self, party_id: str) -> PartyContact | None:
        # Both answers are awaited: whether identity knows the party decides before whether
        # the profile could be asked.
        party, preferences = await asyncio.gather(
            self._ask("identity", self._get_party(party_id)),
            self._ask("profile", self._get_preferences(party_id)),
            return_exceptions=True,
        )
        if isinstance(party, BaseException):
            raise party
        if party is None:
            return None
        if isinstance(preferences, BaseException):
            raise preferences
        if party.party_id and party.party_id != party_id:
            # A merged party: identity answered with the survivor, whose preferences count.
            preferences = await self._ask("profile", self._get_preferences(party.party_id))
        phone, email = _addresses(party.golden_record)
        if _masked(phone) or _masked_email(email):
            self._refused(_Refused("identity", "MASKED_PERSONAL_DATA"))
            raise DirectoryUnavailable(
                "identity answered with masked addresses: the service token lacks "
                "identity.party.read_pii"
            )
        # Answered as it should: a refusal seen from now on is news again.
        self._logged.clear()
        contact = PartyContact(party_id=party.party_id or party_id, phone=_e164(phone), email=email)
        if preferences is None:
            return contact
        return _with_preferences(contact, preferences)

    async def _get_party(self, party_id: str) -> party_pb2.Party:
        response: identity_service_pb2.GetPartyResponse = await self._identity.GetParty(
            identity_service_pb2.GetPartyRequest(party_id=party_id), timeout=self._timeout
        )
        return response.party

    async def _get_preferences(self, party_id: str) -> profile_pb2.Preferences:
        response: profile_service_pb2.GetProfileResponse = await self._profile.GetProfile(
            profile_service_pb2.GetProfileRequest(
                party_id=party_id, read_mask=FieldMask(paths=["preferences"])
            ),
            timeout=self._timeout,
        )
        return response.profile.preferences

    async def _ask(self, service: str, call: Awaitable[T]) -> T | None:
        """The answer; None for NOT_FOUND; DirectoryUnavailable for every other failure."""
        try:
            answer = await call
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code == grpc.StatusCode.NOT_FOUND:
                return None
            if code not in _TRANSIENT:
                self._refused(_Refused(service, code.name))
            # The status details are the server's words: not repeated here.
            raise DirectoryUnavailable(f"{service} answered {code.name}") from None
        return answer

    def _refused(self, refused: _Refused) -> None:
        if refused in self._logged:
            return
        self._logged.add(refused)
        log.error(
            "the party directory may not ask %s: fix the service token or its roles; sends "
            "wait until then",
            refused.service,
            extra={"service": refused.service, "status_code": refused.code},
        )


def _addresses(golden: party_pb2.GoldenRecord) -> tuple[str, str]:
    """The golden record's most recent phone and e-mail (identity lists them newest first)."""
    phone = golden.phones[0].value if golden.phones else ""
    email = golden.emails[0].value if golden.emails else ""
    return phone, email


def _masked(phone: str) -> bool:
    # Identity's phones are E.164 digits; an asterisk is only ever its mask.
    return "*" in phone


def _masked_email(email: str) -> bool:
    return bool(_MASKED_EMAIL.match(email))


def _e164(phone: str) -> str:
    """E.164, or "" when it is not a possible phone number."""
    if not phone:
        return ""
    try:
        return parse_phone(phone).e164
    except PhoneUnreadable:
        return ""


def _with_preferences(contact: PartyContact, preferences: profile_pb2.Preferences) -> PartyContact:
    # The profile has a preferred channel but no per-channel opt-out (opting out is a consent,
    # per channel and purpose, which notifications keeps from ProfileChanged): nothing to map
    # to opted_out_channels here.
    quiet_hours = None
    if preferences.HasField("quiet_hours_start") and preferences.HasField("quiet_hours_end"):
        start = _wall_time(preferences.quiet_hours_start)
        end = _wall_time(preferences.quiet_hours_end)
        if start is not None and end is not None:
            quiet_hours = QuietHours(start, end)
    return PartyContact(
        party_id=contact.party_id,
        phone=contact.phone,
        email=contact.email,
        language=preferences.language,
        time_zone=preferences.time_zone,
        quiet_hours=quiet_hours,
    )


def _wall_time(value: timeofday_pb2.TimeOfDay) -> dt.time | None:
    """24:00 (google.type.TimeOfDay allows it for an end of day) is midnight; a value out of
    range, which the profile does not store, counts as not set."""
    hours = 0 if value.hours == 24 else value.hours
    try:
        return dt.time(hours, value.minutes, value.seconds)
    except ValueError:
        return None
