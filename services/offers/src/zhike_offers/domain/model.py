"""What the offers use cases take and give back (pure values; the transport maps them to and from
the contract, storage keeps them).

Decision ids: an arbitration (one call of `decide`) gets a UUID whose last byte is 0; the offers
it chose get the same UUID with their rank in that byte. A decision id thus names its arbitration
in the decision log, where its offer, party and segment are, without a row of its own.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from dataclasses import dataclass

from zhike_offers.domain.catalogue import Category, Offer
from zhike_offers.domain.contact_policy import ContactKind
from zhike_offers.domain.decision import MAX_OFFERS, ChosenOffer, Decision, NotChosen


class DecisionTrigger(enum.StrEnum):
    REQUEST = "request"  # a DecideOffers call
    PROFILE_CHANGE = "profile_change"  # a ProfileChanged touching facts outbound offers read
    # A retired, changed or new offer (the outbound sweep), or the customer's switches.
    CATALOGUE_OR_PREFERENCE = "catalogue_or_preference"


@dataclass(frozen=True)
class StoredOffer:
    offer: Offer
    saved_at: dt.datetime  # when this version was saved


@dataclass(frozen=True)
class DecidedOffer:
    chosen: ChosenOffer
    decision_id: str
    offer: Offer  # the version decided: names, product code


@dataclass(frozen=True)
class Decided:
    # `decision.not_chosen` is always filled (the decision log keeps every explanation): the
    # transport returns it only when the request asked to explain.
    decision: Decision
    arbitration_id: str
    offers: tuple[DecidedOffer, ...]


@dataclass(frozen=True)
class ResponseRecord:
    response_id: str  # the caller's idempotency key
    decision_id: str
    offer_id: str
    party_id: str
    kind: ContactKind  # IMPRESSION, CLICK, ACCEPT, DECLINE or IGNORE
    channel: str
    at: dt.datetime


@dataclass(frozen=True)
class MessageSent:
    """Notifications' word that a message went out: its NotificationSent (a provider accepted
    it) or its NotificationDelivered (the receipt said it arrived), whichever comes first; the
    second changes nothing."""

    notification_id: str  # the contact's key: one message, one contact
    party_id: str
    channel: str  # offers' channel name (an in-app inbox message is "mobile_app")
    decision_id: str  # "" when the message names no decision
    offer_id: str  # "" when the message names no offer
    at: dt.datetime  # when it was sent, or delivered


@dataclass(frozen=True)
class ContactPreferences:
    party_id: str
    do_not_contact: bool = False
    personalised_offers: bool = True
    version: int = 0  # how many times the customer changed them
    updated_at: dt.datetime | None = None  # None while they are the defaults
    # Outbound channels ("sms", "email", "push") he wants nothing on but transactional messages.
    opted_out_channels: frozenset[str] = frozenset()

    @property
    def switches(self) -> Switches:
        """What the customer chose, without the version and time of the choice."""
        return (self.do_not_contact, self.personalised_offers, self.opted_out_channels)


# Do-not-contact, personalised offers, the outbound channels opted out of.
Switches = tuple[bool, bool, frozenset[str]]


@dataclass(frozen=True)
class OfferPage:
    offers: tuple[StoredOffer, ...]
    next_page_token: str
    catalogue_version: str


@dataclass(frozen=True)
class OutboundDecision:
    """An offer decided outbound for a party, while it is ACTIVE (not withdrawn)."""

    decision_id: str
    party_id: str
    offer_id: str
    offer_version: int
    channel: str
    template_id: str
    decided_at: dt.datetime


@dataclass(frozen=True)
class WithdrawnDecision:
    decision_id: str
    offer_id: str
    offer_version: int
    channel: str
    # What `withdrawal_reason` said (its explanation is the detail). A merged party's decisions
    # are withdrawn as NOT_VALID_NOW: the party they were for is gone.
    why: NotChosen
    at: dt.datetime


@dataclass(frozen=True)
class Arbitration:
    """One call of `decide` as the decision log keeps it."""

    arbitration_id: str
    trigger: DecisionTrigger
    decision: Decision  # not_chosen always filled
    inputs_digest: str
    segment: str  # the propensity segment the ranking used (responses teach that one)
    withdrawn: tuple[WithdrawnDecision, ...] = ()
    requested_by: str = ""  # the caller's subject; empty for outbound arbitrations

    @property
    def party_id(self) -> str:
        return self.decision.party_id

    def decision_ids(self) -> tuple[str, ...]:
        return tuple(decision_id(self.arbitration_id, c.rank) for c in self.decision.chosen)


@dataclass(frozen=True)
class DecisionLogEntry:
    arbitration_id: str
    party_id: str
    trigger: DecisionTrigger
    decided_at: dt.datetime
    channel: str
    placement: str
    chosen: tuple[DecidedOffer, ...]
    not_chosen: tuple[NotChosen, ...]
    inputs_digest: str  # SHA-256 hex of the canonical facts, request, history and model version
    catalogue_version: str
    model_version: str
    profile_version: int
    personalised: bool
    withdrawn: tuple[WithdrawnDecision, ...]
    requested_by: str


@dataclass(frozen=True)
class DecisionPage:
    entries: tuple[DecisionLogEntry, ...]
    next_page_token: str


@dataclass(frozen=True)
class SimulationResult:
    population_size: int
    sample_size: int
    eligible: int
    applicable: int
    suitable: int
    contactable: int
    expected_contacts_per_day: float
    competing: tuple[tuple[Offer, int], ...]  # live offers and their overlap, most first


@dataclass(frozen=True)
class OfferDecidedEvent:
    decision: OutboundDecision
    category: Category
    # The party's profile version it was decided on, when a profile change (or the sweep)
    # caused it; 0: none did.
    profile_version: int
    valid_until: dt.datetime | None = None  # the offer's close (None: it does not close)


@dataclass(frozen=True)
class OfferWithdrawnEvent:
    withdrawn: WithdrawnDecision
    party_id: str
    profile_version: int  # the party's it was withdrawn on; 0 when no profile change caused it


@dataclass(frozen=True)
class PreferencesChangedEvent:
    """The customer changed his switches: notifications gates its messages on them."""

    preferences: ContactPreferences


OutboundEvent = OfferDecidedEvent | OfferWithdrawnEvent | PreferencesChangedEvent


# --- decision ids ---------------------------------------------------------------------------


def arbitration_id(fresh_uuid: str) -> str:
    """An arbitration id from a fresh UUID (`zhike_runtime.ids.new_id()`): its last byte, where
    the ranks of its decisions go, cleared."""
    value = uuid.UUID(fresh_uuid).int & ~0xFF
    return str(uuid.UUID(int=value))


def decision_id(arbitration: str, rank: int) -> str:
    if not 1 <= rank <= MAX_OFFERS:
        raise ValueError(f"rank must be from 1 to {MAX_OFFERS}")
    return str(uuid.UUID(int=uuid.UUID(arbitration).int | rank))


def arbitration_of(decision: str) -> tuple[str, int] | None:
    """The arbitration id and rank a decision id names; None when it names none."""
    try:
        value = uuid.UUID(decision).int
    except ValueError:
        return None
    rank = value & 0xFF
    if not 1 <= rank <= MAX_OFFERS:
        return None
    return str(uuid.UUID(int=value & ~0xFF)), rank
