"""Is a group-room message meant for the bot? Intentional mentions, and the bot's name.

Found in an exploratory test: Element sends ``m.mentions`` with every message (``{}`` when
nobody was picked as a pill), and "Lotsenbot, wie ändere ich mein Passwort?" went unanswered
because the body was looked at only when ``m.mentions`` was missing.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lotsenbot.config import MatrixConfig
from lotsenbot.matrix.transport import MatrixTransport, addresses

BOT = "@lotsenbot:stadt.example"
ANNA = "@anna:stadt.example"
ROOM = "!team:stadt.example"


def transport(tmp_path: Path) -> MatrixTransport:
    config = MatrixConfig(
        homeserver="http://127.0.0.1:1", user_id=BOT, password="x", store_path=tmp_path / "store"
    )
    return MatrixTransport(config)


def mentions_bot(t: MatrixTransport, content: dict[str, Any]) -> bool:
    event = SimpleNamespace(source={"type": "m.room.message", "sender": ANNA, "event_id": "$e",
                                    "origin_server_ts": 1, "content": content})  # fmt: skip
    incoming = t._incoming(ROOM, event, is_direct=False)
    assert incoming is not None
    return incoming.mentions_bot


@pytest.mark.parametrize(
    "body",
    [
        "Lotsenbot, wie ändere ich mein Passwort?",
        "lotsenbot: Drucker geht nicht",
        "@lotsenbot wie ändere ich mein Passwort?",
        "@Lotsenbot, Frage zum VPN",
        "Hallo Lotsenbot, wie beantrage ich Urlaub?",
        "  Lotsenbot – wo finde ich das Formular?",
        "Lotsenbot?",
        "Digitale Lotsin, hilf mir bitte",
        f"{BOT} wie ändere ich mein Passwort?",
    ],
)
def test_a_message_that_begins_by_addressing_the_bot_is_for_the_bot(body: str) -> None:
    assert addresses(body, [BOT, "lotsenbot", "Digitale Lotsin"])


@pytest.mark.parametrize(
    "body",
    [
        "Lotsenbot ist heute aber langsam",  # a sentence about the bot
        "Frag doch den Lotsenbot, der weiß das",
        "Die Antwort vom Lotsenbot war gut",
        "Lotsenbots Antworten sind kurz",
        "Lotsenbot-Fragen sammeln wir im Wiki",
        "@lotsenbotter hast du Zeit?",  # someone else whose name begins the same
        "@lotsenbot:andere-stadt.example wie geht das?",  # the same name on another server
        "",
    ],
)
def test_the_name_elsewhere_or_as_a_subject_is_not_addressing_it(body: str) -> None:
    assert not addresses(body, [BOT, "lotsenbot", "Digitale Lotsin"])


def test_an_empty_m_mentions_does_not_hide_the_name(tmp_path: Path) -> None:
    t = transport(tmp_path)
    typed = {"msgtype": "m.text", "body": "Lotsenbot, wie ändere ich mein Passwort?",
             "m.mentions": {}}  # fmt: skip
    assert mentions_bot(t, typed)
    assert mentions_bot(t, {**typed, "m.mentions": {"user_ids": ["@bert:stadt.example"]}})
    about = {**typed, "body": "Der Lotsenbot, hat der heute frei?"}
    assert not mentions_bot(t, about)
    pill = {"msgtype": "m.text", "body": "Kannst du helfen?", "m.mentions": {"user_ids": [BOT]}}
    assert mentions_bot(t, pill)
    # Clients without intentional mentions: as before, the ID anywhere or the name first.
    legacy = {"msgtype": "m.text", "body": f"Frage an {BOT}: Drucker?"}
    assert mentions_bot(t, legacy)
    assert not mentions_bot(t, {**legacy, "m.mentions": {}})


def test_the_display_name_the_bot_has_in_the_room_counts(tmp_path: Path) -> None:
    t = transport(tmp_path)
    t.client.rooms[ROOM] = SimpleNamespace(  # type: ignore[assignment]
        users={BOT: SimpleNamespace(display_name="Digitale Lotsin"), ANNA: None}
    )
    body = {"msgtype": "m.text", "body": "Digitale Lotsin, wo ist das Formular?", "m.mentions": {}}
    assert mentions_bot(t, body)
