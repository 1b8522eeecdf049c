"""Offers tables. Private to storage/: the domain never sees rows.

- `party`, `party_fact`: the projection of the profile's ProfileChanged. One row per fact key
  (`projection.entries`), each with the profile_version that set it: a write is conditional on
  a higher version, so any delivery order ends in the in-order state. `party` also holds the
  customer's own switches (do-not-contact, personalised offers), so a decision reads a party
  with one statement.
- `offer` (the latest version of each offer: what is live) and `offer_version` (every version
  ever saved, for the decision log and GetOffer).
- `contact_event`: a party's contacts (outbound decisions, responses, notifications' messages),
  read by time per party; keyed by the response, decision or notification id that made it, so
  each is recorded once.
- `outbound_decision`: outbound decisions, ACTIVE until withdrawn.
- `decision_log`: every arbitration, with its inputs digest and explanation.
- `propensity`: the Beta–Binomial counts per offer × segment.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

_ID = sa.String(36)
_OFFER = sa.String(64)
_TIME = sa.DateTime(timezone=True)

party = sa.Table(
    "party",
    metadata,
    sa.Column("party_id", _ID, primary_key=True),
    # The highest ProfileChanged.profile_version applied.
    sa.Column("profile_version", sa.BigInteger(), nullable=False, server_default="0"),
    # Set when identity merged the party into another: nothing is decided for it any more.
    # Replaced by a later ProfileChanged of the party (a split re-routed the retired id).
    sa.Column("merged_into", _ID, nullable=True, index=True),
    # Identity ended the retired id's forwarding (a split parted its records): merged_into is
    # the party the split kept, which its contacts count for; a channel asking by it is told
    # NOT_FOUND (offers_0006).
    sa.Column("forwarding_ended", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("do_not_contact", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("personalised_offers", sa.Boolean(), nullable=False, server_default=sa.true()),
    # How many times the customer changed the switches, and when last (NULL: the defaults).
    sa.Column("preferences_version", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("preferences_updated_at", _TIME, nullable=True),
    sa.Column("updated_at", _TIME, nullable=False),
    # The outbound channels opted out of, sorted and comma-separated ("": none; migration 0002).
    sa.Column("opted_out_channels", sa.String(64), nullable=False, server_default=""),
)

party_fact = sa.Table(
    "party_fact",
    metadata,
    sa.Column("party_id", _ID, primary_key=True),
    # "assets:USD", "holding:<system>:<record>:<account>:<currency>", "segment:<name>",
    # "consent:<channel>:<purpose>", "tier", "value_band", "risk", "age" (JSON null: not known
    # any more).
    sa.Column("fact_key", sa.String(320), primary_key=True),
    sa.Column("value", sa.JSON(), nullable=False),
    sa.Column("profile_version", sa.BigInteger(), nullable=False),
)

offer = sa.Table(
    "offer",
    metadata,
    sa.Column("offer_id", _OFFER, primary_key=True),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("document", sa.JSON(), nullable=False),  # canonical (Offer.to_document)
    sa.Column("retired", sa.Boolean(), nullable=False),
    sa.Column("saved_at", _TIME, nullable=False),
)

offer_version = sa.Table(
    "offer_version",
    metadata,
    sa.Column("offer_id", _OFFER, primary_key=True),
    sa.Column("version", sa.Integer(), primary_key=True),
    sa.Column("document", sa.JSON(), nullable=False),
    sa.Column("retired", sa.Boolean(), nullable=False),
    sa.Column("saved_at", _TIME, nullable=False),
    # "default", "created", "updated", or why it was retired.
    sa.Column("reason", sa.String(500), nullable=False),
)

contact_event = sa.Table(
    "contact_event",
    metadata,
    # "response:<response id>", "decided:<decision id>" or "message:<notification id>".
    sa.Column("contact_id", sa.String(64), primary_key=True),
    # Whose contact history it is now: merges move it (with the forwarding of the party it was
    # recorded for).
    sa.Column("party_id", _ID, nullable=False),
    # The party it was recorded for, never moved (offers_0006; NULL: recorded before, then
    # party_id is taken as it). A re-routed retired id takes the contacts recorded for it.
    sa.Column("recorded_party_id", _ID, nullable=True),
    sa.Column("at", _TIME, nullable=False),
    sa.Column("offer_id", _OFFER, nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(24), nullable=False),
    # The offer's category when the contact happened.
    sa.Column("marketing", sa.Boolean(), nullable=False),
    sa.Column("decision_id", _ID, nullable=False),
    sa.Index("ix_contact_event_party_at", "party_id", "at"),
    sa.Index("ix_contact_event_at", "at"),
    # The responses to one decision, by kind (offers_0005).
    sa.Index("ix_contact_event_decision", "decision_id", "kind"),
)

outbound_decision = sa.Table(
    "outbound_decision",
    metadata,
    sa.Column("decision_id", _ID, primary_key=True),
    sa.Column("party_id", _ID, nullable=False),
    sa.Column("offer_id", _OFFER, nullable=False),
    sa.Column("offer_version", sa.Integer(), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("template_id", sa.String(64), nullable=False),
    sa.Column("decided_at", _TIME, nullable=False),
    # The party's profile version it was decided on, when a ProfileChanged caused it (the
    # causing change's, or a later one when that change came late); 0: none did.
    sa.Column("profile_version", sa.BigInteger(), nullable=False),
    sa.Column("active", sa.Boolean(), nullable=False),
    sa.Column("withdrawn_at", _TIME, nullable=True),
    sa.Column("withdraw_reason", sa.String(32), nullable=True),
    sa.Column("withdraw_detail", sa.String(1000), nullable=True),
    sa.Index("ix_outbound_decision_party_active", "party_id", "active"),
    sa.Index("ix_outbound_decision_offer_active", "offer_id", "active"),
    sa.Index("ix_outbound_decision_withdrawn_at", "withdrawn_at"),
)

decision_log = sa.Table(
    "decision_log",
    metadata,
    sa.Column("arbitration_id", _ID, primary_key=True),
    sa.Column("party_id", _ID, nullable=False),
    sa.Column("decided_at", _TIME, nullable=False),
    sa.Column("trigger", sa.String(32), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("placement", sa.String(64), nullable=False),
    sa.Column("profile_version", sa.BigInteger(), nullable=False),
    sa.Column("inputs_digest", sa.String(64), nullable=False),
    sa.Column("catalogue_version", sa.String(64), nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("personalised", sa.Boolean(), nullable=False),
    # The propensity segment the ranking used: a response to one of its decisions teaches it.
    sa.Column("segment", sa.String(64), nullable=False),
    sa.Column("requested_by", sa.String(200), nullable=False),
    # The seed, the offers chosen, every candidate not chosen and why, and the decisions it
    # withdrew (storage/records.py).
    sa.Column("entry", sa.JSON(), nullable=False),
    sa.Index("ix_decision_log_party_time", "party_id", "decided_at", "arbitration_id"),
    sa.Index("ix_decision_log_decided_at", "decided_at"),
)

propensity = sa.Table(
    "propensity",
    metadata,
    sa.Column("offer_id", _OFFER, primary_key=True),
    sa.Column("segment", sa.String(64), primary_key=True),
    sa.Column("successes", sa.Float(), nullable=False),
    sa.Column("failures", sa.Float(), nullable=False),
    sa.Column("updated_at", _TIME, nullable=False),
)

# Where the outbound sweep stands (domain/sweep.py): one row.
outbound_sweep = sa.Table(
    "outbound_sweep",
    metadata,
    sa.Column("sweep", sa.String(32), primary_key=True),
    # A JSON list of "offer_id:version", sorted: the live outbound offers when it started.
    sa.Column("offers", sa.JSON(), nullable=False),
    # A JSON list of offer ids, sorted: those it decides.
    sa.Column("fresh", sa.JSON(), nullable=False),
    sa.Column("cursor", _ID, nullable=False),
    sa.Column("finished", sa.Boolean(), nullable=False),
    sa.Column("updated_at", _TIME, nullable=False),
)
