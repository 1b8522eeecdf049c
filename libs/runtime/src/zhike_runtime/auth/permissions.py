"""The platform's one access table: every RPC of every service, the permission it needs, and
what else its calls imply (a party-scoped request field, audit). Deny by default: a method that
is not in this table is refused, and a test walks every service descriptor against it.

Roles map to permissions in configuration (`ZHIKE_AUTH_ROLES_FILE`); `DEFAULT_ROLES` is the
table a bank starts from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Methods any caller may use without a token: probes, and the public contract (reflection is
# off in production; locally it reveals only what proto/ already publishes).
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


@dataclass(frozen=True)
class MethodRule:
    permission: str
    # The request field that names the party a call is about. Customer-delegated tokens (with a
    # party claim) may call only methods that have one, and only for their own party.
    party_field: str | None = None
    # Holding this permission as well unmasks personal data in the response; such reads are
    # audited (who, which party, which fields).
    unmask_permission: str | None = None
    unmasked_fields: tuple[str, ...] = ()
    # Every call is audited: steward and admin writes, searches by personal data.
    audited: bool = False


_IDENTITY = "/zhike.identity.v1.IdentityService/"
_PROFILE = "/zhike.profile.v1.ProfileService/"
_OFFERS = "/zhike.offers.v1.OffersService/"
_NOTIFICATIONS = "/zhike.notifications.v1.NotificationsService/"
_PARTY_PII = ("id_number", "phones", "emails", "address")

METHOD_RULES: Mapping[str, MethodRule] = {
    _IDENTITY + "LinkSourceRecord": MethodRule("identity.record.write"),
    _IDENTITY + "GetParty": MethodRule(
        "identity.party.read",
        party_field="party_id",
        unmask_permission="identity.party.read_pii",
        unmasked_fields=_PARTY_PII,
    ),
    # Searches by ID number, phone, e-mail or name are audited by the handler (not by source key).
    _IDENTITY + "FindParties": MethodRule("identity.party.find"),
    _IDENTITY + "ExplainLink": MethodRule("identity.steward.read"),
    # Stewards' names, reasons and the other parties records moved to: staff only (not the
    # customer's own channel).
    _IDENTITY + "GetPartyHistory": MethodRule("identity.party.history", party_field="party_id"),
    _IDENTITY + "MergeParties": MethodRule("identity.steward.write", audited=True),
    _IDENTITY + "SplitParty": MethodRule("identity.steward.write", audited=True),
    _IDENTITY + "ListLinkReviews": MethodRule("identity.steward.read"),
    _IDENTITY + "ResolveLinkReview": MethodRule("identity.steward.write", audited=True),
    _IDENTITY + "RecordLinkDecision": MethodRule("identity.steward.write", audited=True),
    # Account ids may be card or account numbers: masked unless the caller may read them.
    _PROFILE + "GetProfile": MethodRule(
        "profile.read",
        party_field="party_id",
        unmask_permission="profile.read_pii",
        unmasked_fields=("holdings.account_id",),
    ),
    _PROFILE + "ListHoldings": MethodRule(
        "profile.read",
        party_field="party_id",
        unmask_permission="profile.read_pii",
        unmasked_fields=("account_id",),
    ),
    _PROFILE + "ListInteractions": MethodRule("profile.read", party_field="party_id"),
    _PROFILE + "SearchProfiles": MethodRule("profile.search"),
    _PROFILE + "IngestSourceEvents": MethodRule("profile.source.write"),
    _OFFERS + "DecideOffers": MethodRule("offers.decide", party_field="party_id"),
    _OFFERS + "RecordResponse": MethodRule("offers.respond", party_field="party_id"),
    # Catalogue writes change what every customer is offered: audited.
    _OFFERS + "CreateOffer": MethodRule("offers.catalogue.write", audited=True),
    _OFFERS + "UpdateOffer": MethodRule("offers.catalogue.write", audited=True),
    _OFFERS + "RetireOffer": MethodRule("offers.catalogue.write", audited=True),
    _OFFERS + "GetOffer": MethodRule("offers.catalogue.read"),
    _OFFERS + "ListOffers": MethodRule("offers.catalogue.read"),
    _OFFERS + "SimulateOffer": MethodRule("offers.simulate"),
    # Who read a party's decisions (factors, explanations) is itself on record.
    _OFFERS + "ListDecisions": MethodRule("offers.audit", party_field="party_id", audited=True),
    _OFFERS + "GetContactPreferences": MethodRule(
        "offers.contact_preferences", party_field="party_id"
    ),
    # The customer's PIPL art. 24 switch: who changed it, and for whom, is on record.
    _OFFERS + "SetContactPreferences": MethodRule(
        "offers.contact_preferences", party_field="party_id", audited=True
    ),
    _NOTIFICATIONS + "SendNotification": MethodRule("notifications.send", audited=True),
    _NOTIFICATIONS + "GetNotification": MethodRule("notifications.read"),
    _NOTIFICATIONS + "ListNotifications": MethodRule("notifications.read", party_field="party_id"),
    # The customer's own inbox: the app reads it with a customer-delegated token.
    _NOTIFICATIONS + "ListInbox": MethodRule("notifications.inbox", party_field="party_id"),
    _NOTIFICATIONS + "MarkInboxRead": MethodRule("notifications.inbox", party_field="party_id"),
}

# Roles that act for one customer: a token with one must carry the party claim
# (ZHIKE_AUTH_CUSTOMER_ROLES, these by default).
CUSTOMER_ROLES: tuple[str, ...] = ("channel_app",)

# Roles as a bank starts with them. A customer-delegated token (mobile app) carries the
# channel_app role and a party claim, which confines it to that party's own data.
DEFAULT_ROLES: Mapping[str, tuple[str, ...]] = {
    "channel_app": (
        "identity.party.read",
        "profile.read",
        "offers.decide",
        "offers.respond",
        "offers.contact_preferences",
        "notifications.inbox",
    ),
    "branch_teller": (
        "identity.party.read",
        "identity.party.read_pii",
        "identity.party.find",
        "identity.party.history",
        "profile.read",
        "profile.read_pii",
        "offers.decide",
        "offers.respond",
        # A customer may opt out wherever they talk to the bank (PIPL art. 24).
        "offers.contact_preferences",
        "notifications.read",
    ),
    "call_centre_agent": (
        "identity.party.read",
        "identity.party.find",
        "identity.party.history",
        "profile.read",
        "offers.decide",
        "offers.respond",
        "offers.contact_preferences",
        "notifications.read",
    ),
    "data_steward": (
        "identity.party.read",
        "identity.party.read_pii",
        "identity.party.find",
        "identity.party.history",
        "identity.steward.read",
        "identity.steward.write",
        "profile.read",
        "profile.read_pii",
    ),
    "marketing_operations": (
        "profile.read",
        "profile.search",
        "offers.decide",
        "offers.catalogue.read",
        "offers.catalogue.write",
        "offers.simulate",
        "notifications.send",
        "notifications.read",
    ),
    # Internal audit and compliance: the decision log, and the offer versions it names.
    "auditor": ("offers.audit", "offers.catalogue.read", "notifications.read"),
    # Systems that send service and transactional messages (one-time passcodes, fraud alerts,
    # maturity reminders): the card centre, core banking, the fraud engine.
    "messaging_system": ("notifications.send", "notifications.read"),
    # The notifications service itself, when it sends: it needs the party's real phone and
    # e-mail (events never carry them), so it reads them unmasked from identity, and every such
    # read is audited by identity as an unmasked read (purpose "notification dispatch"); from
    # the profile only the preferences (language, time zone, quiet hours), masked data is fine.
    "notifications_dispatcher": (
        "identity.party.read",
        "identity.party.read_pii",
        "profile.read",
    ),
    # Source-system adapters (core deposits, cards, loans…) feeding their records and facts in.
    "source_system": ("identity.record.write", "profile.source.write"),
    "sre": ("audit.read",),
}

PERMISSIONS = frozenset(
    {rule.permission for rule in METHOD_RULES.values()}
    | {rule.unmask_permission for rule in METHOD_RULES.values() if rule.unmask_permission}
    | {"audit.read"}
)
