"""What a local gateway received, one file a message, de-duplicated by the sender's key.

    <state dir>/gateways/sms/<key>.json     <state dir>/gateways/push/<key>.json
    <state dir>/gateways/email/<key>.eml    (the message as received; key: its Message-ID)

The file's name is the key (or a hash of it when it is not a plain token), and a file appears
under that name whole or not at all (written aside, then hard-linked into place, which fails when
the name exists): the same key twice — a resend after a crash, two senders racing — stores
nothing new, across processes and restarts. That is what lets a test prove "the gateway holds
exactly one message".
"""

from __future__ import annotations

import email.policy
import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from zhike_notifications.domain.model import Channel

GATEWAYS_DIRECTORY = "gateways"
SUFFIXES = {Channel.SMS: ".json", Channel.PUSH: ".json", Channel.EMAIL: ".eml"}
_PLAIN_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")


def channel_directory(state_dir: Path, channel: Channel) -> Path:
    """Where the local gateway of `channel` stores what it receives, under a state directory."""
    return state_dir / GATEWAYS_DIRECTORY / channel.value


@dataclass(frozen=True)
class Stored:
    path: Path
    created: bool  # False: the key was already there, nothing new was stored


class MessageStore:
    """One channel's directory of received messages."""

    def __init__(self, directory: Path, suffix: str) -> None:
        self.directory = directory
        self.suffix = suffix

    def path_for(self, key: str) -> Path:
        name = key if _PLAIN_KEY.fullmatch(key) else hashlib.sha256(key.encode()).hexdigest()
        return self.directory / f"{name}{self.suffix}"

    def put(self, key: str | None, content: bytes) -> Stored:
        """Stores `content` under `key` unless something is already stored under it. Without a
        key (an e-mail without a Message-ID) every message is stored."""
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.path_for(key) if key else self.path_for(f"no-key-{uuid.uuid4().hex}")
        if target.exists():
            return Stored(target, created=False)
        aside = self.directory / f".incoming-{uuid.uuid4().hex}"
        aside.write_bytes(content)
        try:
            os.link(aside, target)
        except FileExistsError:
            return Stored(target, created=False)
        finally:
            aside.unlink()
        return Stored(target, created=True)

    def paths(self) -> list[Path]:
        """Every stored message, oldest first."""
        if not self.directory.exists():
            return []
        found = [p for p in self.directory.glob(f"*{self.suffix}") if not p.name.startswith(".")]
        return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name))


def stored_records(state_dir: Path, channel: Channel) -> list[dict[str, Any]]:
    """The SMS or push messages a gateway stored under `state_dir`, oldest first."""
    if channel is Channel.EMAIL:
        raise ValueError("e-mails are .eml files: use stored_emails")
    store = MessageStore(channel_directory(state_dir, channel), SUFFIXES[channel])
    return [json.loads(path.read_text(encoding="utf-8")) for path in store.paths()]


def stored_emails(state_dir: Path) -> list[EmailMessage]:
    """The e-mails the local SMTP server stored under `state_dir`, oldest first."""
    store = MessageStore(channel_directory(state_dir, Channel.EMAIL), SUFFIXES[Channel.EMAIL])
    parser = BytesParser(policy=email.policy.default)
    return [parser.parsebytes(path.read_bytes()) for path in store.paths()]
