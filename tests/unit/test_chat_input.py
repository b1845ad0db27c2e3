"""Input handling of the terminal chat client: what is sent, what is a client command."""

from __future__ import annotations

import pytest

from lotsenbot.chat import TEXTE, Command, LineJoiner, parse_command


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Wie bekomme ich ein Diensthandy?", Command("send", "Wie bekomme ich ein Diensthandy?")),
        ("!hilfe", Command("send", "!hilfe")),
        ("  !ticket neu  ", Command("send", "  !ticket neu")),
        ("/quit", Command("quit")),
        ("/EXIT", Command("quit")),
        ("/hilfe", Command("help")),
        ("/help", Command("help")),
        ("/react 2 👍", Command("react", "2 👍")),
        ("/antworte 1 Es ist ein HP", Command("reply", "1 Es ist ein HP")),
        ("/reply 2 ok", Command("reply", "2 ok")),
        ("/room", Command("rooms")),
        ("/rooms", Command("rooms")),
        ("/unsinn x", Command("unknown", "/unsinn")),
        ("//etc/hosts ist kein Befehl", Command("send", "/etc/hosts ist kein Befehl")),
        ("   ", Command("empty")),
    ],
)
def test_parse_command(line: str, expected: Command) -> None:
    assert parse_command(line) == expected


def test_backslash_continues_the_line() -> None:
    joiner = LineJoiner()
    assert joiner.feed("Erste Zeile\\\n") is None
    assert joiner.continuing
    assert joiner.feed("zweite Zeile\\\n") is None
    assert joiner.feed("dritte Zeile\n") == "Erste Zeile\nzweite Zeile\ndritte Zeile"
    assert not joiner.continuing
    assert joiner.feed("allein\r\n") == "allein"


def test_multiline_input_is_sent_as_one_message() -> None:
    joiner = LineJoiner()
    joiner.feed("!ticket neu Drucker\\")
    complete = joiner.feed("Der Drucker im 2. OG druckt nicht.")
    assert complete is not None
    assert parse_command(complete) == Command(
        "send", "!ticket neu Drucker\nDer Drucker im 2. OG druckt nicht."
    )


def test_help_mentions_every_client_command() -> None:
    for command in ("/hilfe", "/react", "/antworte", "/room", "/quit"):
        assert command in TEXTE["hilfe"]
