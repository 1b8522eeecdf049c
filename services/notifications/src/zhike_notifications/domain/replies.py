"""Inbound SMS replies: what the customer's answer asks for (pure).

"TD", "T" and "退订" — in any case, full-width (ＴＤ), with spaces, zero-width characters or
punctuation around or between them ("退订。", " t d ") — withdraw consent to marketing SMS.
Anything else asks for nothing: a reply is never read as more than it plainly says, so "不要退订"
or "TD 谢谢" do nothing (the bank's staff can still read them).
"""

from __future__ import annotations

import enum
import unicodedata
from dataclasses import dataclass

from zhike_notifications.domain.model import Channel, Purpose

UNSUBSCRIBE_WORDS = frozenset({"td", "t", "退订"})
MAX_REPLY_LENGTH = 1000  # longer replies are not commands: not normalised at all


class ReplyAction(enum.StrEnum):
    UNSUBSCRIBE = "unsubscribe"
    NONE = "none"


@dataclass(frozen=True)
class Reply:
    action: ReplyAction
    # What an UNSUBSCRIBE withdraws: consent to this channel for this purpose.
    channel: Channel | None = None
    purpose: Purpose | None = None


NO_ACTION = Reply(ReplyAction.NONE)


def parse_reply(text: str) -> Reply:
    if len(text) > MAX_REPLY_LENGTH:
        return NO_ACTION
    if command(text) in UNSUBSCRIBE_WORDS:
        return Reply(ReplyAction.UNSUBSCRIBE, Channel.SMS, Purpose.MARKETING)
    return NO_ACTION


def command(text: str) -> str:
    """The reply reduced to what a command is compared on: NFKC (full-width letters and spaces
    become ASCII), case folded, without whitespace, punctuation, symbols or invisible format
    characters."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(c for c in folded if unicodedata.category(c)[0] not in "ZPSC")
