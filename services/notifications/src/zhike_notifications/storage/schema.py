"""Notifications tables. Private to storage/: the domain never sees rows.

- `notification`: a notification, the message it carries and every fact known about it, one
  column per fact (`records.py` maps rows to and from `StoredNotification`). `due_at` is what the
  dispatcher's query reads: `Notification.due_at()`, or while an attempt is in flight the time
  it was handed to the provider (the lease, `lease_until`, then says when another dispatcher may
  take it over). The template values are personal data (a one-time passcode, a name): sealed.
- `consent`: the consent decision in force per party × channel × purpose, ordered by
  (`decided_at`, `profile_version`); a write is conditional on a newer decision.
- `contact_preferences`: the customer's do-not-contact and opted-out channels, as offers
  announced them, per party; a write is conditional on a higher version.
- `inbox_message`: the in-app inbox, the rendered text sealed (it holds the values).
- `decision_withdrawal`: offer decisions withdrawn (a notification arriving later is cancelled).
- `webhook_delivery`: providers' webhook delivery ids already handled (replays are ignored).
"""

from __future__ import annotations

import sqlalchemy as sa

from zhike_runtime.crypto import EncryptedColumns

metadata = sa.MetaData()

_ID = sa.String(36)
# A notification's id: a UUID, with room for an id derived from a decision and a channel.
_NOTIFICATION_ID = sa.String(64)
# Offers' decision ids (UUIDs today); "offer-<decision id>" is its notification's id.
_DECISION_ID = sa.String(58)
_CODE = sa.String(64)  # template ids, topics, offer ids, provider names
_ENUM = sa.String(24)
_ERROR = sa.String(200)  # a provider's error code, never the message or the address
_TIME = sa.DateTime(timezone=True)

notification = sa.Table(
    "notification",
    metadata,
    sa.Column("notification_id", _NOTIFICATION_ID, primary_key=True),
    # The message (domain.model.Message).
    sa.Column("party_id", _ID, nullable=False),
    sa.Column("channel", _ENUM, nullable=False),
    sa.Column("category", _ENUM, nullable=False),
    sa.Column("purpose", _ENUM, nullable=False),
    sa.Column("template_id", _CODE, nullable=False),
    sa.Column("topic", _CODE, nullable=False),
    sa.Column("offer_id", _CODE, nullable=False),
    sa.Column("decision_id", _DECISION_ID, nullable=False),
    # When the offer closes (NULL: it does not, or not an offer's).
    sa.Column("send_before", _TIME, nullable=True),
    # The ProfileChanged.profile_version the offer decision was made on (0: not an offer's).
    sa.Column("profile_version", sa.BigInteger(), nullable=False, server_default="0"),
    # The caller's key (NULL: none; several NULLs never collide).
    sa.Column("idempotency_key", sa.String(128), nullable=True),
    sa.Column("request_digest", _CODE, nullable=False),
    # A JSON object of the template's values, sealed (`NOTIFICATION_SEALED`); "" when empty.
    sa.Column("template_values", sa.Text(), nullable=False),
    sa.Column("language", sa.String(35), nullable=False),
    sa.Column("status", _ENUM, nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("due_at", _TIME, nullable=True),
    sa.Column("lease_until", _TIME, nullable=True),
    # The attempt handed to a provider whose result is not recorded yet (ports.Sending).
    sa.Column("sending_attempt", sa.Integer(), nullable=True),
    sa.Column("sending_provider", _CODE, nullable=True),
    sa.Column("sending_started_at", _TIME, nullable=True),
    # The provider that may hold the message ("": none): no later attempt goes elsewhere.
    sa.Column("pinned_provider", _CODE, nullable=False, server_default=""),
    # The facts (domain.model.Notification); a group of columns is all NULL or all set.
    sa.Column("deferred_until", _TIME, nullable=True),
    sa.Column("suppression_reason", _ENUM, nullable=True),
    sa.Column("suppression_detail", sa.Text(), nullable=True),
    sa.Column("withdrawn_by", _ID, nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("retry_attempt", sa.Integer(), nullable=True),
    sa.Column("retry_at", _TIME, nullable=True),
    sa.Column("retry_provider", _CODE, nullable=True),
    sa.Column("accepted_attempt", sa.Integer(), nullable=True),
    sa.Column("accepted_provider", _CODE, nullable=True),
    sa.Column("accepted_provider_message_id", sa.String(200), nullable=True),
    sa.Column("accepted_at", _TIME, nullable=True),
    sa.Column("gave_up_attempt", sa.Integer(), nullable=True),
    sa.Column("gave_up_reason", _ENUM, nullable=True),
    sa.Column("gave_up_error", _ERROR, nullable=True),
    sa.Column("gave_up_at", _TIME, nullable=True),
    sa.Column("last_failure_attempt", sa.Integer(), nullable=True),
    sa.Column("last_failure_error", _ERROR, nullable=True),
    sa.Column("delivered_at", _TIME, nullable=True),
    sa.Column("undelivered_at", _TIME, nullable=True),
    sa.Column("undelivered_error", _ERROR, nullable=True),
    sa.Index("ux_notification_idempotency_key", "idempotency_key", unique=True),
    sa.Index("ix_notification_due_at", "due_at"),
    sa.Index("ix_notification_party_created", "party_id", "created_at", "notification_id"),
    sa.Index("ix_notification_decision", "decision_id"),
    # Delivery receipts name the provider's message id.
    sa.Index(
        "ix_notification_provider_message", "accepted_provider", "accepted_provider_message_id"
    ),
    sa.Index("ix_notification_created_at", "created_at"),
)

consent = sa.Table(
    "consent",
    metadata,
    sa.Column("party_id", _ID, primary_key=True),
    sa.Column("channel", _ENUM, primary_key=True),
    sa.Column("purpose", _ENUM, primary_key=True),
    sa.Column("given", sa.Boolean(), nullable=False),
    # The evidence (all NULL: none).
    sa.Column("captured_where", sa.String(200), nullable=True),
    sa.Column("captured_at", _TIME, nullable=True),
    sa.Column("text_version", _CODE, nullable=True),
    sa.Column("decided_at", _TIME, nullable=False),
    # The ProfileChanged.profile_version that carried it (0: a decision notifications took).
    sa.Column("profile_version", sa.BigInteger(), nullable=False),
)

# The highest ProfileChanged.profile_version applied per party: what the consents are as of.
party_profile = sa.Table(
    "party_profile",
    metadata,
    sa.Column("party_id", _ID, primary_key=True),
    sa.Column("profile_version", sa.BigInteger(), nullable=False),
)

# The customer's switches, as offers announced them (ContactPreferencesChanged); a write is
# conditional on a higher `version` (migration 0002).
contact_preferences = sa.Table(
    "contact_preferences",
    metadata,
    sa.Column("party_id", _ID, primary_key=True),
    sa.Column("do_not_contact", sa.Boolean(), nullable=False),
    # Sorted, comma-separated channel names ("": none).
    sa.Column("opted_out_channels", sa.String(64), nullable=False),
    sa.Column("version", sa.BigInteger(), nullable=False),
    sa.Column("changed_at", _TIME, nullable=False),
)

inbox_message = sa.Table(
    "inbox_message",
    metadata,
    sa.Column("notification_id", _NOTIFICATION_ID, primary_key=True),
    sa.Column("party_id", _ID, nullable=False),
    sa.Column("template_id", _CODE, nullable=False),
    sa.Column("language", sa.String(35), nullable=False),
    # Rendered with the template's values: sealed (`INBOX_MESSAGE_SEALED`).
    sa.Column("subject", sa.Text(), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("read_at", _TIME, nullable=True),
    sa.Index("ix_inbox_message_party_created", "party_id", "created_at", "notification_id"),
    # For retention (migration 0004).
    sa.Index("ix_inbox_message_created_at", "created_at"),
)

decision_withdrawal = sa.Table(
    "decision_withdrawal",
    metadata,
    sa.Column("decision_id", _DECISION_ID, primary_key=True),
    sa.Column("party_id", _ID, nullable=False),
    sa.Column("at", _TIME, nullable=False),
    # For retention (migration 0004).
    sa.Index("ix_decision_withdrawal_at", "at"),
)

webhook_delivery = sa.Table(
    "webhook_delivery",
    metadata,
    sa.Column("delivery_id", sa.String(255), primary_key=True),
    sa.Column("seen_at", _TIME, nullable=False),
    sa.Index("ix_webhook_delivery_seen_at", "seen_at"),
)

# The personal data sealed at rest, each value bound to its column and row (zhike_runtime.crypto):
# the repository seals and opens them; `zhike rotate-keys --service notifications` can re-seal
# them once the entry point `zhike.encrypted_columns` names ENCRYPTED_COLUMNS.
NOTIFICATION_SEALED = EncryptedColumns("notification", ("notification_id",), ("template_values",))
INBOX_MESSAGE_SEALED = EncryptedColumns("inbox_message", ("notification_id",), ("subject", "body"))
ENCRYPTED_COLUMNS = (NOTIFICATION_SEALED, INBOX_MESSAGE_SEALED)
