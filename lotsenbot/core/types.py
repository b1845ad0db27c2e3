"""Plain data that crosses the boundary between the Matrix transport and the features.

Features never see nio objects: they get an :class:`Incoming` and answer with
:class:`OutMessage` values, which the transport turns into Matrix events.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

IncomingKind = Literal["message", "reaction", "redaction", "edit", "poll_response", "file"]


class Role(enum.StrEnum):
    STAFF = "staff"
    PILOT = "pilot"
    COORDINATOR = "coordinator"


@dataclass(frozen=True)
class Incoming:
    """One event from a person, reduced to what the features need."""

    event_id: str
    room_id: str
    sender: str
    kind: IncomingKind
    body: str = ""
    formatted_body: str | None = None
    msgtype: str = "m.text"
    is_direct: bool = False
    mentions_bot: bool = False
    relates_to: str | None = None  # reacted-to, redacted, edited or poll-start event
    reply_to: str | None = None  # the event a message answers with the client's reply
    # A message inside a thread: the thread's root event, and the thread's latest event
    # before it that the client named as the fallback ``m.in_reply_to`` (no chosen reply).
    thread_root: str | None = None
    thread_latest: str | None = None
    key: str | None = None  # reaction key
    answers: tuple[str, ...] = ()  # poll answer ids
    origin_ts: int = 0  # ms since the epoch
    encrypted: bool = False
    # The sender's display name in the room, as the homeserver has it: None when the
    # transport does not know it, "" when the person has set none.
    sender_name: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str) -> Incoming:
        """Also for rows stored by an older version: fields added since take their default."""
        data = json.loads(raw)
        data["answers"] = tuple(data.get("answers") or ())
        return cls(**data)


@dataclass(frozen=True)
class Attachment:
    filename: str
    mimetype: str
    data: bytes


@dataclass(frozen=True)
class Poll:
    """A native poll (MSC3381); answers are (id, text) pairs."""

    question: str
    answers: tuple[tuple[str, str], ...]
    max_selections: int = 1


@dataclass(frozen=True)
class OutMessage:
    """A message the bot wants to send, independent of Matrix.

    ``markdown`` is rendered to sanitised HTML by the transport. ``meta`` becomes the
    structured ``de.lotsenbot.*`` keys of the event content. ``mentions`` are the only
    people the message may notify; nothing ever notifies a whole room.

    ``thread_root`` puts the message into that thread (a reply to a message in a thread
    stays in it). ``redacts`` makes the row no message at all but the redaction of the
    bot's own earlier message, named by its outbox dedup key: the sender looks up what it
    became (see :mod:`lotsenbot.matrix.sender`); ``markdown`` is then the reason shown.
    """

    markdown: str
    meta: dict[str, Any] = field(default_factory=dict)
    mentions: tuple[str, ...] = ()
    reply_to: str | None = None
    attachment: Attachment | None = None
    poll: Poll | None = None
    ends_poll: str | None = None  # event id of a poll this message closes (MSC3381 end)
    thread_root: str | None = None
    redacts: str | None = None  # dedup key of the bot's own message to redact

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "markdown": self.markdown,
            "meta": self.meta,
            "mentions": list(self.mentions),
            "reply_to": self.reply_to,
        }
        if self.poll is not None:
            data["poll"] = {
                "question": self.poll.question,
                "answers": [list(a) for a in self.poll.answers],
                "max_selections": self.poll.max_selections,
            }
        if self.ends_poll is not None:
            data["ends_poll"] = self.ends_poll
        if self.thread_root is not None:
            data["thread_root"] = self.thread_root
        if self.redacts is not None:
            data["redacts"] = self.redacts
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str, attachment: Attachment | None = None) -> OutMessage:
        data = json.loads(raw)
        poll = None
        if data.get("poll"):
            p = data["poll"]
            poll = Poll(p["question"], tuple(tuple(a) for a in p["answers"]), p["max_selections"])
        return cls(
            markdown=data["markdown"],
            meta=data.get("meta") or {},
            mentions=tuple(data.get("mentions") or ()),
            reply_to=data.get("reply_to"),
            attachment=attachment,
            poll=poll,
            ends_poll=data.get("ends_poll"),
            thread_root=data.get("thread_root"),
            redacts=data.get("redacts"),
        )
