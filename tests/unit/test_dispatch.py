"""The dispatcher's reading of messages that start with the prefix: what is a command, what
is chat among colleagues, and what an unknown command is answered with.

Through the real dispatcher with the FAQ and tickets features (the harness of
``test_faq_feature``); assertions read the outbox rows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.unit.test_faq_feature import ANNA, GROUP, KOORD, Env, build_env


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    environment = await build_env(tmp_path)
    try:
        yield environment
    finally:
        await environment.db.close()


def in_group(**extra: object) -> dict[str, object]:
    return {"room": GROUP, "is_direct": False, **extra}


async def test_unknown_commands_in_a_group_room_are_chat_unless_a_near_typo(env: Env) -> None:
    """Found by an exploratory test: "!wichtig: Besprechung um 10" among colleagues got
    "Den Befehl „wichtig:“ kenne ich nicht. Meinten Sie `!nicht`?"."""
    for body in ("!wichtig: Besprechung um 10", "!!!", "!!Achtung", "!?", "!meine Güte",
                 "!nicht so laut", "!info folgt"):  # fmt: skip
        assert await env.say(ANNA, body, **in_group()) == [], body
    (status,) = await env.db.fetchall("SELECT DISTINCT status FROM inbox")
    assert status[0] == "ignored"
    # A near typo of a real command is still worth a hint, with the real command.
    typo = await env.one(ANNA, "!hilf", **in_group())
    assert typo.error == "unknown_command" and "Meinten Sie `!hilfe`?" in typo.text
    assert (await env.one(ANNA, "!nichthilfreich", **in_group())).meta["de.lotsenbot.error"][
        "suggestion"
    ] == "nicht-hilfreich"
    # Addressed to the bot, an unknown command gets the helpful answer as in a direct chat.
    addressed = await env.one(ANNA, "!wichtig", **in_group(mentions_bot=True))
    assert addressed.error == "unknown_command"


async def test_unknown_commands_in_a_direct_chat_get_the_helpful_error(env: Env) -> None:
    unknown = await env.one(ANNA, "!wichtig: Besprechung um 10")
    assert unknown.error == "unknown_command"
    assert "„wichtig“" in unknown.text and "Meinten Sie" not in unknown.text
    # Only punctuation after the prefix is no command: read like any other text.
    assert (await env.one(ANNA, "!!!")).faq == {"smalltalk": "no_words"}


@pytest.mark.parametrize(
    ("typed", "suggested"),
    [("!nicht", "!nicht-hilfreich"), ("!meine", "!meine-daten"), ("!daten", "!daten-löschen")],
)
async def test_the_suggestion_is_a_real_command_not_the_rejected_word(
    env: Env, typed: str, suggested: str
) -> None:
    """ "!nicht" was answered "Den Befehl „nicht“ kenne ich nicht. Meinten Sie `!nicht`?"
    (the first word of "nicht hilfreich"). The privacy commands are not in this harness,
    so "!meine" and "!daten" get another real command or none, never the word itself."""
    reply = await env.one(ANNA, typed)
    suggestion = reply.meta["de.lotsenbot.error"]["suggestion"]
    assert suggestion != typed[1:]
    assert f"`{typed}`" not in reply.text
    if typed == "!nicht":
        assert suggestion == "nicht-hilfreich" and f"`{suggested}`" in reply.text


async def test_punctuation_after_a_command_word_is_no_part_of_it(env: Env) -> None:
    """ "!Hilfe." was answered "Den Befehl „hilfe.“ kenne ich nicht"."""
    assert "de.lotsenbot.help" in (await env.one(ANNA, "!Hilfe.")).meta
    assert "de.lotsenbot.help" in (await env.one(ANNA, "!hilfe?", **in_group())).meta
    listing = await env.one(KOORD, "!faq offen!")
    assert listing.error is None and "open" in listing.faq
    # The arguments keep theirs: "?" stays part of the question.
    answer = await env.one(ANNA, "!frage: Ich habe mein Passwort vergessen?")
    assert answer.faq["entry"] == "passwort-vergessen"
