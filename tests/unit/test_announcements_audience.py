"""Audience expansion and reading the announcement command, without database or Matrix."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from lotsenbot.announcements.audience import (
    Audience,
    AudienceKind,
    Directory,
    Recipient,
    dedup_key,
    dedup_range,
    expand,
    parse_request,
    resolve_audience,
)
from lotsenbot.core.errors import BadArguments
from lotsenbot.texts import Catalogue

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2027, 1, 10, 9, 0, tzinfo=UTC)
DEPARTMENTS = ["it", "buergeramt"]

BOT = "@lotsenbot:stadt.example"
ANNA, BEN, CEM, DORA, EVA = (f"@{n}:stadt.example" for n in ("anna", "ben", "cem", "dora", "eva"))
IT_ROOM, COORD_ROOM, GROUP_1, GROUP_2 = (f"!{n}:stadt.example" for n in ("it", "co", "g1", "g2"))

DIRECTORY = Directory(
    pilots=[ANNA, BEN],
    coordinators=[CEM, ANNA],
    coordinator_room=COORD_ROOM,
    departments={"it": ([ANNA, BEN], IT_ROOM), "buergeramt": ([BEN], None)},
    known_users=[ANNA, BEN, CEM, DORA, EVA, BOT],
    opted_out=frozenset({DORA, BEN}),
    group_rooms=[GROUP_1, IT_ROOM, GROUP_2],
    bot_user_id=BOT,
)


def users(recipients: list[Recipient]) -> list[str]:
    return [r.target for r in recipients if r.kind == "user"]


def rooms(recipients: list[Recipient]) -> list[str]:
    return [r.target for r in recipients if r.kind == "room"]


def parse(args: str, **kwargs: object) -> object:
    return parse_request(args, departments=DEPARTMENTS, now=NOW, tz=BERLIN, **kwargs)  # type: ignore[arg-type]


# -- expansion -------------------------------------------------------------------------------


def test_pilots_are_all_pilots_of_the_config_and_no_rooms() -> None:
    result = expand(Audience(AudienceKind.PILOTS), DIRECTORY, important=False)
    assert result == [Recipient("user", ANNA), Recipient("user", BEN)]


def test_opt_out_does_not_apply_to_role_audiences() -> None:
    # Ben opted out of general news but is still reached as a pilot.
    assert BEN in users(expand(Audience(AudienceKind.PILOTS), DIRECTORY, important=False))
    dept = expand(Audience(AudienceKind.DEPARTMENT, "buergeramt"), DIRECTORY, important=False)
    assert dept == [Recipient("user", BEN)]


def test_department_reaches_its_pilots_and_its_room() -> None:
    result = expand(Audience(AudienceKind.DEPARTMENT, "it"), DIRECTORY, important=False)
    assert users(result) == [ANNA, BEN]
    assert rooms(result) == [IT_ROOM]


def test_coordination_with_and_without_coordinator_room() -> None:
    result = expand(Audience(AudienceKind.COORDINATION), DIRECTORY, important=False)
    assert users(result) == [CEM, ANNA]
    assert rooms(result) == [COORD_ROOM]
    bare = Directory(coordinators=[CEM], bot_user_id=BOT)
    assert expand(Audience(AudienceKind.COORDINATION), bare, important=False) == [
        Recipient("user", CEM)
    ]


def test_rooms_are_the_group_rooms_only() -> None:
    result = expand(Audience(AudienceKind.ROOMS), DIRECTORY, important=False)
    assert result == [
        Recipient("room", GROUP_1),
        Recipient("room", IT_ROOM),
        Recipient("room", GROUP_2),
    ]


def test_all_respects_opt_out_unless_important_and_never_includes_the_bot() -> None:
    general = expand(Audience(AudienceKind.ALL), DIRECTORY, important=False)
    assert users(general) == [ANNA, CEM, EVA]
    assert rooms(general) == [GROUP_1, IT_ROOM, GROUP_2]
    important = expand(Audience(AudienceKind.ALL), DIRECTORY, important=True)
    assert users(important) == [ANNA, BEN, CEM, DORA, EVA]


def test_each_recipient_once_even_if_listed_twice() -> None:
    directory = Directory(
        departments={"it": ([ANNA, ANNA, BEN], IT_ROOM)},
        coordinators=[CEM, CEM],
        coordinator_room=COORD_ROOM,
        bot_user_id=BOT,
    )
    result = expand(Audience(AudienceKind.DEPARTMENT, "it"), directory, important=False)
    assert result == [Recipient("user", ANNA), Recipient("user", BEN), Recipient("room", IT_ROOM)]
    assert len(expand(Audience(AudienceKind.COORDINATION), directory, important=False)) == 2


def test_unknown_department_reaches_nobody() -> None:
    assert expand(Audience(AudienceKind.DEPARTMENT, "gone"), DIRECTORY, important=False) == []


def test_dedup_keys_are_per_target_and_inside_the_range() -> None:
    keys = {dedup_key(7, r) for r in expand(Audience(AudienceKind.ALL), DIRECTORY, important=True)}
    assert len(keys) == 8
    low, high = dedup_range(7)
    assert all(low <= k < high for k in keys)
    # Announcement 70's keys must not fall into 7's range.
    assert not low <= dedup_key(70, Recipient("user", ANNA)) < high
    assert dedup_key(7, Recipient("user", ANNA)) == f"ann:7:{ANNA}"


def test_audience_key_round_trip() -> None:
    for audience in (Audience(AudienceKind.ROOMS), Audience(AudienceKind.DEPARTMENT, "it")):
        assert Audience.from_key(audience.key) == audience
    assert Audience(AudienceKind.DEPARTMENT, "it").key == "abteilung:it"


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("lotsen", Audience(AudienceKind.PILOTS)),
        ("Lotsen", Audience(AudienceKind.PILOTS)),
        ("räume", Audience(AudienceKind.ROOMS)),
        ("Raeume", Audience(AudienceKind.ROOMS)),
        ("alle", Audience(AudienceKind.ALL)),
        ("koordination", Audience(AudienceKind.COORDINATION)),
        ("IT", Audience(AudienceKind.DEPARTMENT, "it")),
        ("buergeramt", Audience(AudienceKind.DEPARTMENT, "buergeramt")),
        ("bürgeramt", Audience(AudienceKind.DEPARTMENT, "buergeramt")),
        ("kantine", None),
    ],
)
def test_resolve_audience(word: str, expected: Audience | None) -> None:
    assert resolve_audience(word, DEPARTMENTS) == expected


# -- parsing ---------------------------------------------------------------------------------


def test_parse_without_time_keeps_multiline_markdown() -> None:
    request = parse("lotsen **Hallo** zusammen,\n\n- Punkt 1\n- Punkt 2\n")
    assert request.audience == Audience(AudienceKind.PILOTS)
    assert request.body == "**Hallo** zusammen,\n\n- Punkt 1\n- Punkt 2"
    assert request.send_at is None
    assert request.important is False


def test_parse_text_may_start_on_the_next_line() -> None:
    request = parse("it\n# Wartung\nHeute Abend.")
    assert request.audience == Audience(AudienceKind.DEPARTMENT, "it")
    assert request.body == "# Wartung\nHeute Abend."


def test_parse_with_time_in_berlin_winter_and_summer() -> None:
    winter = parse("lotsen 15.01.2027 08:00 Guten Morgen")
    assert winter.send_at == datetime(2027, 1, 15, 7, 0, tzinfo=UTC)
    assert winter.body == "Guten Morgen"
    summer = parse("alle 1.7.2027 8:30 Uhr\nSommerfest")
    assert summer.send_at == datetime(2027, 7, 1, 6, 30, tzinfo=UTC)
    assert summer.body == "Sommerfest"


def test_parse_with_seconds() -> None:
    request = parse("lotsen 10.01.2027 10:00:05 Gleich geht's los")
    assert request.send_at == datetime(2027, 1, 10, 9, 0, 5, tzinfo=UTC)


def test_parse_important_by_command_or_first_line() -> None:
    assert parse("alle Hallo", important=True).important is True
    marked = parse("alle Wichtig: Das Portal ist heute nicht erreichbar.")
    assert marked.important is True
    assert marked.body.startswith("Wichtig:")
    assert parse("alle\nwichtig:\nServerwartung").important is True
    assert parse("alle Nicht wichtig: nur zur Info").important is False
    assert parse("alle Hallo\nWichtig: zweite Zeile zählt nicht").important is False


def test_unknown_audience_names_the_valid_ones_in_german() -> None:
    with pytest.raises(BadArguments) as caught:
        parse("kantine Heute Eintopf")
    error = caught.value
    assert error.text_key == "announcements.error.unknown_audience"
    text = Catalogue("de")(error.text_key, prefix="!", **error.params)
    assert "kantine" in text
    for word in ("lotsen", "koordination", "räume", "alle", "it", "buergeramt"):
        assert f"`{word}`" in text
    assert text.startswith("Die Zielgruppe")


def test_past_time_is_refused() -> None:
    with pytest.raises(BadArguments) as caught:
        parse("lotsen 10.01.2027 09:59 Zu spät")  # 08:59 UTC, before NOW
    assert caught.value.text_key == "announcements.error.time_past"
    text = Catalogue("de")(caught.value.text_key, prefix="!", **caught.value.params)
    assert "Vergangenheit" in text


@pytest.mark.parametrize(
    ("args", "key"),
    [
        ("lotsen 31.02.2027 08:00 Text", "announcements.error.time_invalid"),
        ("lotsen 15.01.2027 25:00 Text", "announcements.error.time_invalid"),
        ("lotsen 28.03.2027 02:30 Text", "announcements.error.time_invalid"),  # DST gap
        ("lotsen 15.01.2027 Text ohne Uhrzeit", "announcements.error.time_missing"),
        ("lotsen 15.01.2029 08:00 Tippfehler im Jahr", "announcements.error.time_far"),
        ("lotsen 15.01.2027 08:00", "announcements.usage.announce"),
        ("lotsen", "announcements.usage.announce"),
        ("   ", "announcements.usage.announce"),
    ],
)
def test_parse_errors(args: str, key: str) -> None:
    with pytest.raises(BadArguments) as caught:
        parse(args)
    assert caught.value.text_key == key
    Catalogue("de")(key, prefix="!", **caught.value.params)  # every parameter is known


def test_date_inside_the_text_is_not_a_send_time() -> None:
    request = parse("lotsen Treffen am 15.01.2027 08:00 im Rathaus")
    assert request.send_at is None
    assert request.body == "Treffen am 15.01.2027 08:00 im Rathaus"


def test_user_text_in_errors_is_escaped() -> None:
    with pytest.raises(BadArguments) as caught:
        parse("**fett** Text")
    assert caught.value.params["audience"] == "\\*\\*fett\\*\\*"
