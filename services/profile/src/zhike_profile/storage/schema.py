"""Profile tables. Private to storage/: the domain never sees rows.

Facts are stored per source record (source system + record id), never per party: a party's
profile is the facts of the records linked to it now, found through `profile_source_record`.
So identity's merges, splits and moves change one link row per record (or, for a merge, the
rows resolved to the retired party) and copy no facts: holdings are conserved by construction.

Every fact row carries the version of what it reflects (a per-account sequence, a per-record
version, a link version): writes are conditional on it, so a late or repeated event changes
nothing, whatever order events arrive in.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

_ID = sa.String(36)
_SYSTEM = sa.String(64)
_RECORD = sa.String(128)
_ACCOUNT = sa.String(64)
_SEQ = sa.BigInteger()
_MONEY = sa.BigInteger()

profile = sa.Table(
    "profile",
    metadata,
    sa.Column("party_id", _ID, primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # Set when identity merged this party into another: reads forward there.
    sa.Column("merged_into", _ID, nullable=True, index=True),
    # Identity's forwarding version of where merged_into leads (profile_0008): a forwarding is
    # replaced only by one with a higher version, whatever order the events arrive in.
    sa.Column("forwarding_version", _SEQ, nullable=False, server_default="0"),
    # Identity ended the forwarding (a split parted the records the id brought): the records
    # linked to it stay with merged_into, the party the split kept; reads of it find nothing.
    sa.Column("forwarding_ended", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("display_name", sa.String(200), nullable=False, server_default=""),
    # The golden record's birth date (segment rules read the age): personal data, kept as the
    # name is kept, and never put in a log line, an error or ProfileChanged.
    sa.Column("birth_date", sa.Date(), nullable=True),
    # The golden record change the name and birth date come from: an older one changes nothing.
    sa.Column("display_name_at", sa.DateTime(timezone=True), nullable=True),
    # How many ProfileChanged events the party has had (the last one's profile_version).
    sa.Column("version", _SEQ, nullable=False, server_default="0"),
    # What the last ProfileChanged described (JSON, domain/changes.py): the next one says what
    # differs from it.
    sa.Column("snapshot", sa.JSON(), nullable=True),
    # The assessments as of the last change, for SearchProfiles.
    sa.Column("tier", sa.String(32), nullable=True, index=True),
    sa.Column("value_band", sa.String(32), nullable=True, index=True),
    sa.Column("total_assets_cny_minor", _MONEY, nullable=True, index=True),
    # The expiry of the risk assessment the last ProfileChanged told as valid: on that day the
    # profile tells it expired, event or not.
    sa.Column("risk_expires_on", sa.Date(), nullable=True, index=True),
    # The read model (domain/read_model.py): the party's facts and assessment as its last
    # change assessed them, served by GetProfile while they are as of today. NULL: none yet.
    sa.Column("view", sa.JSON(none_as_null=True), nullable=True),
    # The day (business time zone) the party was last assessed: the daily refresh assesses
    # again every party not assessed today, so what time alone changes (a customer turning
    # dormant, a birthday, a rolling average) is told without waiting for an event.
    sa.Column("assessed_on", sa.Date(), nullable=False, server_default="1970-01-01", index=True),
)

profile_segment = sa.Table(
    "profile_segment",
    metadata,
    sa.Column("segment", sa.String(64), primary_key=True),
    # Indexed as well: a party's segments are replaced and read by its id (profile_0009).
    sa.Column("party_id", _ID, primary_key=True, index=True),
)

# A source record belongs to one party at a time: its key is the primary key.
profile_source_record = sa.Table(
    "profile_source_record",
    metadata,
    sa.Column("source_system", _SYSTEM, primary_key=True),
    sa.Column("source_record_id", _RECORD, primary_key=True),
    # The party the record belongs to now: linked_party_id, forwarded through merges.
    sa.Column("party_id", _ID, sa.ForeignKey("profile.party_id"), nullable=False, index=True),
    sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
    # The party identity's latest link event named, and that link's version (identity's
    # per-record link version; 0 for events from before versions, ordered by linked_at).
    sa.Column("linked_party_id", _ID, nullable=False),
    sa.Column("link_version", _SEQ, nullable=False, server_default="0"),
)

# One account (deposit, card, loan, investment position) of a source record. Each group of
# columns is versioned by the account sequence of the fact that set it.
account = sa.Table(
    "account",
    metadata,
    sa.Column("source_system", _SYSTEM, primary_key=True),
    sa.Column("source_record_id", _RECORD, primary_key=True),
    sa.Column("account_id", _ACCOUNT, primary_key=True),
    # What the account is: unknown (NULL) until an opening fact arrives.
    sa.Column("product_line", sa.String(32), nullable=True),
    sa.Column("product_code", sa.String(64), nullable=False, server_default=""),
    sa.Column("currency", sa.String(3), nullable=False, server_default=""),
    sa.Column("branch_code", sa.String(32), nullable=False, server_default=""),
    sa.Column("attributes_seq", _SEQ, nullable=False, server_default="0"),
    # The earliest opening date any opening fact gave.
    sa.Column("opened_on", sa.Date(), nullable=True),
    # Open (NULL) or closed, as the latest opening or closing fact says.
    sa.Column("closed_on", sa.Date(), nullable=True),
    sa.Column("status_seq", _SEQ, nullable=False, server_default="0"),
    sa.Column("card_tier", sa.SmallInteger(), nullable=True),
    sa.Column("tier_seq", _SEQ, nullable=False, server_default="0"),
    sa.Column("product_risk", sa.SmallInteger(), nullable=True),
    sa.Column("risk_seq", _SEQ, nullable=False, server_default="0"),
    sa.Column("overdue_days", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("overdue_seq", _SEQ, nullable=False, server_default="0"),
)

# The balance of an account in one currency, as the latest balance fact says.
account_balance = sa.Table(
    "account_balance",
    metadata,
    sa.Column("source_system", _SYSTEM, primary_key=True),
    sa.Column("source_record_id", _RECORD, primary_key=True),
    sa.Column("account_id", _ACCOUNT, primary_key=True),
    sa.Column("currency", sa.String(3), primary_key=True),
    sa.Column("balance_minor", _MONEY, nullable=False),
    sa.Column("seq", _SEQ, nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
)

# Every balance fact (one row per account sequence): the monthly average balances (the tier's
# basis) come from these, whatever order they arrived in.
balance_history = sa.Table(
    "balance_history",
    metadata,
    sa.Column("source_system", _SYSTEM, primary_key=True),
    sa.Column("source_record_id", _RECORD, primary_key=True),
    sa.Column("account_id", _ACCOUNT, primary_key=True),
    sa.Column("currency", sa.String(3), primary_key=True),
    sa.Column("seq", _SEQ, primary_key=True),
    sa.Column("balance_minor", _MONEY, nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_balance_history_record_time", "source_system", "source_record_id", "changed_at"),
)

# Transactions summed per account, month and currency (sums: each transaction counted once by
# the consumer's inbox, in any order). Per account, so that card purchases are told apart by
# the account's product line whenever its opening fact arrives.
monthly_activity = sa.Table(
    "monthly_activity",
    metadata,
    sa.Column("source_system", _SYSTEM, primary_key=True),
    sa.Column("source_record_id", _RECORD, primary_key=True),
    sa.Column("account_id", _ACCOUNT, primary_key=True),
    sa.Column("month", sa.Date(), primary_key=True),
    sa.Column("currency", sa.String(3), primary_key=True),
    sa.Column("transactions", sa.Integer(), nullable=False),
    sa.Column("debit_minor", _MONEY, nullable=False),
    sa.Column("credit_minor", _MONEY, nullable=False),
    sa.Column("salary_minor", _MONEY, nullable=False),
    sa.Column("card_purchase_minor", _MONEY, nullable=False),
)

# Contacts across channels, each once (keyed by its source event; a message notifications sent
# by its notification id, under the party's notifications record: facts.notifications_record).
interaction = sa.Table(
    "interaction",
    metadata,
    sa.Column("source_system", _SYSTEM, primary_key=True),
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("source_record_id", _RECORD, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("branch_code", sa.String(32), nullable=False, server_default=""),
    sa.Column("detail", sa.String(64), nullable=False, server_default=""),
    # A message sent (kind message_sent): its channel, template, and the offer and decision it
    # delivered; empty for the source systems' interactions.
    sa.Column("channel", sa.String(16), nullable=False, server_default=""),
    sa.Column("template_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("offer_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("decision_id", sa.String(64), nullable=False, server_default=""),
    sa.Index("ix_interaction_record_time", "source_system", "source_record_id", "occurred_at"),
)

# A record's latest consent decision per channel and purpose, with its evidence.
consent = sa.Table(
    "consent",
    metadata,
    sa.Column("source_system", _SYSTEM, primary_key=True),
    sa.Column("source_record_id", _RECORD, primary_key=True),
    sa.Column("channel", sa.String(16), primary_key=True),
    sa.Column("purpose", sa.String(16), primary_key=True),
    sa.Column("given", sa.Boolean(), nullable=False),
    sa.Column("captured_where", sa.String(100), nullable=False),
    sa.Column("captured_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("text_version", sa.String(32), nullable=False),
    sa.Column("seq", _SEQ, nullable=False),
)

preference = sa.Table(
    "preference",
    metadata,
    sa.Column("source_system", _SYSTEM, primary_key=True),
    sa.Column("source_record_id", _RECORD, primary_key=True),
    sa.Column("language", sa.String(35), nullable=False),
    sa.Column("time_zone", sa.String(64), nullable=False),
    sa.Column("quiet_start", sa.Time(), nullable=True),
    sa.Column("quiet_end", sa.Time(), nullable=True),
    sa.Column("preferred_channel", sa.String(16), nullable=True),
    sa.Column("seq", _SEQ, nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
)

risk_assessment = sa.Table(
    "risk_assessment",
    metadata,
    sa.Column("source_system", _SYSTEM, primary_key=True),
    sa.Column("source_record_id", _RECORD, primary_key=True),
    sa.Column("level", sa.SmallInteger(), nullable=False),
    sa.Column("assessed_on", sa.Date(), nullable=False),
    sa.Column("expires_on", sa.Date(), nullable=False),
    sa.Column("seq", _SEQ, nullable=False),
)
