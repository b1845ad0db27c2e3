"""Config loading: every mistake becomes one ConfigError naming file and key.

Also keeps ``config.example.toml`` honest: it must load, and it must document every key the
models know, so the example cannot drift from the code as keys are added.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from lotsenbot.config import (
    ENV_ACCESS_TOKEN,
    ENV_PASSWORD,
    ENV_PICKLE_KEY,
    BotConfig,
    Config,
    ConfigError,
    DatabaseConfig,
    LoggingConfig,
    MatrixConfig,
    MeetupsConfig,
    OfficeHours,
    PrivacyConfig,
    TicketsConfig,
    load_config,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"

MINIMAL_MATRIX = """
[matrix]
homeserver = "https://matrix.stadt.de"
user_id = "@lotsenbot:stadt.de"
password = "geheim"
"""


@pytest.fixture(autouse=True)
def _no_secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets in the developer's environment must not change what these tests see."""
    for name in (ENV_PASSWORD, ENV_ACCESS_TOKEN, ENV_PICKLE_KEY):
        monkeypatch.delenv(name, raising=False)


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


# -- the example file --------------------------------------------------------------------------


def _nested_model(annotation: Any) -> tuple[type[BaseModel], bool] | None:
    """The model a field holds (and whether it is a list of them), or None for plain values."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin = typing.get_origin(annotation)
    if origin in (list, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _nested_model(arg)
            if found is not None:
                return found[0], origin is list
    return None


def model_keys(model: type[BaseModel], section: str = "") -> set[tuple[str, str]]:
    """Every (section, key) of the config, following nested models and lists of models."""
    keys: set[tuple[str, str]] = set()
    for name, field in model.model_fields.items():
        if field.exclude:
            continue  # computed by load_config, not a key of the file
        nested = _nested_model(field.annotation)
        if nested is None:
            keys.add((section, name))
        else:
            keys |= model_keys(nested[0], f"{section}.{name}" if section else name)
    return keys


_HEADER = re.compile(r"^\[\[?([a-z_.]+)\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^(?:# )?([a-z_]+) = ")


def documented_keys(text: str) -> set[tuple[str, str]]:
    """Keys set or shown commented out (``# key = value``), with the section they are in."""
    keys: set[tuple[str, str]] = set()
    section = ""
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            section = header.group(1)
            continue
        key = _KEY.match(line)
        if key:
            keys.add((section, key.group(1)))
    return keys


def test_every_model_key_is_documented_in_the_example() -> None:
    expected = model_keys(Config)
    documented = documented_keys(EXAMPLE.read_text("utf-8"))
    assert expected - documented == set(), "in config.example.toml nicht erklärt"
    assert documented - expected == set(), "in config.example.toml, aber kein Konfigurationsfeld"
    # The walk really follows nesting and lists, otherwise the check above proves little.
    assert ("bot.office_hours", "fr") in expected
    assert ("departments", "specialist") in expected
    assert ("matrix", "pickle_key") in expected


def test_example_loads_and_shows_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_PASSWORD, "aus-der-umgebung")
    config = load_config(EXAMPLE)
    assert config.matrix.password == "aus-der-umgebung"
    assert config.matrix.store_path == EXAMPLE.parent / "store"
    assert config.database.path == EXAMPLE.parent / "lotsenbot.db"
    assert config.matrix.effective_allowed_servers == [config.matrix.server_name]
    # Sections whose values the example states as defaults must equal the code's defaults.
    assert config.database.model_copy(update={"path": DatabaseConfig().path}) == DatabaseConfig()
    assert config.bot.office_hours == OfficeHours()
    assert config.tickets == TicketsConfig()
    assert config.meetups == MeetupsConfig()
    assert config.privacy == PrivacyConfig()
    assert config.logging == LoggingConfig()
    for key in ("language", "timezone", "prefix", "state", "max_message_length"):
        assert getattr(config.bot, key) == BotConfig.model_fields[key].default, key
    for key in (
        "device_name",
        "allowed_servers",
        "sync_timeout_ms",
        "cross_signing",
        "undecryptable_notice_after",
    ):
        field = MatrixConfig.model_fields[key]
        default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
        assert getattr(config.matrix, key) == default, key
    ids = [d.id for d in config.departments]
    assert ids == ["it", "infosec", "datenschutz", "organisation", "personal",
                   "digitalisierung", "buergeramt"]  # fmt: skip
    for department in config.departments:
        assert department.description and department.pilots, department.id
        assert 1 <= len(department.keywords) <= 10, department.id
        assert department.specialist is (department.id != "buergeramt")


def test_commented_out_examples_are_valid_too(tmp_path: Path) -> None:
    """Uncommenting the optional lines must give a valid file, not a trap for the admin."""
    text = re.sub(r"(?m)^# ([a-z_]+ = )", r"\1", EXAMPLE.read_text("utf-8"))
    (tmp_path / "synonyme.yaml").write_text("- [fachverfahren, fachanwendung]\n", "utf-8")
    config = load_config(write(tmp_path, text))
    assert config.matrix.access_token and config.matrix.device_id
    assert config.matrix.pickle_key
    assert config.bot.coordinator_room is not None
    assert config.bot.office_hours.spans()[5][0].hour == 9
    assert 6 not in config.bot.office_hours.spans()


# -- validation --------------------------------------------------------------------------------


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL_MATRIX))
    assert config.matrix.homeserver == "https://matrix.stadt.de"
    assert config.bot.timezone == "Europe/Berlin"
    assert config.departments == []
    assert config.source == (tmp_path / "config.toml").resolve()


def test_missing_homeserver_names_the_key(tmp_path: Path) -> None:
    error = load_error(tmp_path, '[matrix]\nuser_id = "@bot:stadt.de"\npassword = "x"\n')
    assert error.key == "matrix.homeserver"
    assert "fehlt" in error.problem


def test_missing_matrix_section(tmp_path: Path) -> None:
    error = load_error(tmp_path, '[bot]\nlanguage = "de"\n')
    assert error.key == "matrix"
    assert "fehlt" in error.problem


@pytest.mark.parametrize(
    "user_id", ["lotsenbot", "@Lotsenbot:stadt.de", "@bot", "bot:stadt.de", "@bot:stadt de"]
)
def test_bad_matrix_id_is_rejected(tmp_path: Path, user_id: str) -> None:
    text = MINIMAL_MATRIX.replace('"@lotsenbot:stadt.de"', f'"{user_id}"')
    error = load_error(tmp_path, text)
    assert error.key == "matrix.user_id"
    assert "Matrix-ID" in error.problem


def test_bad_pilot_id_points_at_department_and_position(tmp_path: Path) -> None:
    text = MINIMAL_MATRIX + (
        '[[departments]]\nid = "it"\nname = "IT"\npilots = ["@gut:stadt.de"]\n'
        '[[departments]]\nid = "ba"\nname = "Bürgeramt"\npilots = ["@gut:stadt.de", "schlecht"]\n'
    )
    error = load_error(tmp_path, text)
    assert error.key == "departments[2].pilots"
    assert "schlecht" in error.problem


def test_homeserver_needs_a_scheme_and_loses_trailing_slash(tmp_path: Path) -> None:
    error = load_error(tmp_path, MINIMAL_MATRIX.replace("https://matrix.stadt.de", "matrix.de"))
    assert error.key == "matrix.homeserver"
    config = load_config(write(tmp_path, MINIMAL_MATRIX.replace(".stadt.de", ".stadt.de/")))
    assert config.matrix.homeserver == "https://matrix.stadt.de"


@pytest.mark.parametrize(
    ("section", "key"),
    [("bot", "prefx"), ("logging", "json"), ("bot.office_hours", "montag"), ("privacy", "x")],
)
def test_unknown_key_names_the_key(tmp_path: Path, section: str, key: str) -> None:
    error = load_error(tmp_path, MINIMAL_MATRIX + f'[{section}]\n{key} = "!"\n')
    assert error.key == f"{section}.{key}"
    assert f"{section}.{key}" in str(error)
    assert "unbekannt" in error.problem


def test_unknown_top_level_section(tmp_path: Path) -> None:
    error = load_error(tmp_path, MINIMAL_MATRIX + "[faqs]\nx = 1\n")
    assert error.key == "faqs"


def test_env_secrets_override_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, MINIMAL_MATRIX + 'pickle_key = "aus-datei"\n')
    monkeypatch.setenv(ENV_PASSWORD, "aus-umgebung")
    monkeypatch.setenv(ENV_PICKLE_KEY, "schluessel-umgebung")
    config = load_config(path)
    assert config.matrix.password == "aus-umgebung"
    assert config.matrix.pickle_key == "schluessel-umgebung"


def test_env_access_token_without_device_id_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, '[matrix]\nhomeserver = "https://m.de"\nuser_id = "@b:m.de"\n')
    monkeypatch.setenv(ENV_ACCESS_TOKEN, "syt_token")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "device_id" in info.value.problem
    path = write(tmp_path, path.read_text("utf-8") + 'device_id = "DEV"\n')
    assert load_config(path).matrix.access_token == "syt_token"


def test_no_credentials_at_all(tmp_path: Path) -> None:
    error = load_error(tmp_path, '[matrix]\nhomeserver = "https://m.de"\nuser_id = "@b:m.de"\n')
    assert error.key == "matrix"
    assert ENV_PASSWORD in error.problem
    # Commands that never log in (backup, purge, migrate, faq) run without the secret, as
    # the service user who cannot read the secrets file.
    path = write(tmp_path, '[matrix]\nhomeserver = "https://m.de"\nuser_id = "@b:m.de"\n')
    assert load_config(path, login=False).matrix.password is None


def test_backup_and_purge_need_no_matrix_secret(tmp_path: Path) -> None:
    from lotsenbot.cli import EXIT_CONFIG, main

    path = write(tmp_path, '[matrix]\nhomeserver = "https://m.de"\nuser_id = "@b:m.de"\n')
    for command in (["purge", "--dry-run"], ["backup", str(tmp_path / "b.db")], ["migrate"]):
        assert main([*command, "--config", str(path)]) != EXIT_CONFIG, command
    assert main(["check-config", "--config", str(path)]) == EXIT_CONFIG


def test_empty_env_var_does_not_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_PASSWORD, "")
    assert load_config(write(tmp_path, MINIMAL_MATRIX)).matrix.password == "geheim"


def test_relative_paths_are_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "anderswo"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    absolute = tmp_path / "fest" / "bot.db"
    text = MINIMAL_MATRIX + 'store_path = "daten/store"\n'
    path = write(tmp_path / "etc", text)
    config = load_config(Path("..") / "etc" / "config.toml")
    assert config.matrix.store_path == (tmp_path / "etc" / "daten" / "store").resolve()
    assert config.database.path == (tmp_path / "etc" / "lotsenbot.db").resolve()
    assert config.source == path.resolve()
    path.write_text(text + f'[database]\npath = "{absolute.as_posix()}"\n', encoding="utf-8")
    assert load_config(path).database.path == absolute


def test_duplicate_department_ids(tmp_path: Path) -> None:
    text = MINIMAL_MATRIX + (
        '[[departments]]\nid = "it"\nname = "IT"\n[[departments]]\nid = "it"\nname = "IT 2"\n'
    )
    error = load_error(tmp_path, text)
    assert error.key == "departments"
    assert "„it“" in error.problem
    assert "doppelt" in error.problem


@pytest.mark.parametrize("bad_id", ["IT", "bürgeramt", "-it", "mit leerzeichen", "x" * 41])
def test_bad_department_id(tmp_path: Path, bad_id: str) -> None:
    error = load_error(tmp_path, MINIMAL_MATRIX + f'[[departments]]\nid = "{bad_id}"\nname = "X"\n')
    assert error.key == "departments[1].id"


@pytest.mark.parametrize(
    "span", ["16:00-08:00", "8-16", "25:00-26:00", "08:00-24:30", "08:60-09:00", "08:00-08:00"]
)
def test_bad_office_hours(tmp_path: Path, span: str) -> None:
    error = load_error(tmp_path, MINIMAL_MATRIX + f'[bot.office_hours]\nmo = "{span}"\n')
    assert error.key == "bot.office_hours.mo"
    assert span in error.problem


def test_office_hours_spans(tmp_path: Path) -> None:
    text = MINIMAL_MATRIX + '[bot.office_hours]\nmo = "7:30 - 24:00"\ndi = ""\nsa = "09:00-12:00"\n'
    spans = load_config(write(tmp_path, text)).bot.office_hours.spans()
    assert spans[0][0].hour == 7 and spans[0][0].minute == 30
    assert spans[0][1] is None  # 24:00 = midnight
    assert 1 not in spans  # "" = closed
    assert spans[5][1] is not None and spans[5][1].hour == 12
    assert 6 not in spans  # Sunday closed by default


def test_bad_time_zone(tmp_path: Path) -> None:
    error = load_error(tmp_path, MINIMAL_MATRIX + '[bot]\ntimezone = "Europe/Bonn"\n')
    assert error.key == "bot.timezone"
    assert "Europe/Bonn" in error.problem


def test_bundesland(tmp_path: Path) -> None:
    error = load_error(tmp_path, MINIMAL_MATRIX + '[bot]\nstate = "XY"\n')
    assert error.key == "bot.state"
    assert "XY" in error.problem and "NW" in error.problem
    config = load_config(write(tmp_path, MINIMAL_MATRIX + '[bot]\nstate = "by"\n'))
    assert config.bot.state == "BY"


def test_bad_duration(tmp_path: Path) -> None:
    error = load_error(tmp_path, MINIMAL_MATRIX + '[tickets]\nclaim_within = "4 Stunden"\n')
    assert error.key == "tickets.claim_within"
    assert "4 Stunden" in error.problem and '"4h"' in error.problem
    error = load_error(tmp_path, MINIMAL_MATRIX + '[meetups]\nreminders = ["24h", "1w"]\n')
    assert error.key == "meetups.reminders[2]"


def test_durations_in_seconds(tmp_path: Path) -> None:
    text = MINIMAL_MATRIX + '[tickets]\nclaim_within = "90m"\nanswer_within = "2d"\n'
    config = load_config(write(tmp_path, text))
    assert config.durations() == {"claim_within": 5400.0, "answer_within": 172800.0}


def test_config_error_string_has_file_and_key(tmp_path: Path) -> None:
    error = load_error(tmp_path, MINIMAL_MATRIX + '[logging]\nlevel = "LAUT"\n')
    path = str(tmp_path / "config.toml")
    assert error.path == path
    assert str(error).startswith(f"{path}: logging.level: ")


MANY_MISTAKES = """
[matrix]
homeserver = "matrix.stadt.de"
user_id = "@lotsenbot:stadt.de"
password = "geheim"
cross_signing = "ja"

[bot]
coordinators = "@koordination:stadt.de"
max_message_length = 1000.5
timezone = "X/Y"

[tickets]
reopen_days = "vierzehn"

[privacy]
feedback_days = 0

[logging]
level = "LAUT"
"""

ENGLISH = re.compile(r"\b(Input|should|valid|Field|required|permitted|Value error|String)\b")


def test_every_error_is_reported_with_its_key(tmp_path: Path) -> None:
    """Nine mistakes, nine problems: the admin fixes them in one go, not one per run."""
    error = load_error(tmp_path, MANY_MISTAKES)
    keys = [key for key, _ in error.problems]
    assert keys == [
        "matrix.homeserver",
        "matrix.cross_signing",
        "bot.timezone",
        "bot.coordinators",
        "bot.max_message_length",
        "tickets.reopen_days",
        "privacy.feedback_days",
        "logging.level",
    ]
    assert (error.key, error.problem) == error.problems[0]
    lines = str(error).splitlines()
    assert lines == error.lines() and len(lines) == len(keys)
    path = str(tmp_path / "config.toml")
    for line, key in zip(lines, keys, strict=True):
        assert line.startswith(f"{path}: {key}: ")
        assert not ENGLISH.search(line), line


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ('[tickets]\nreopen_days = "vierzehn"\n', "tickets.reopen_days",
         "muss eine ganze Zahl sein (ohne Anführungszeichen), nicht „vierzehn“"),
        ("[tickets]\nreopen_days = -1\n", "tickets.reopen_days", "mindestens 0 sein, nicht -1"),
        ("[tickets]\nreopen_days = 400\n", "tickets.reopen_days", "darf höchstens 365 sein"),
        ('[bot]\ncoordinators = "@k:stadt.de"\n', "bot.coordinators",
         '["@k:stadt.de"] statt „@k:stadt.de“'),
        ("[bot]\ncoordinators = 5\n", "bot.coordinators", "Liste in eckigen Klammern"),
        ('[logging]\nlevel = "LAUT"\n', "logging.level",
         '„LAUT“ ist nicht erlaubt; möglich: "DEBUG", "INFO", "WARNING" oder "ERROR"'),
        ('cross_signing = "ja"\n', "matrix.cross_signing", "muss true oder false sein"),
        ("[bot]\nmax_message_length = 1000.5\n", "bot.max_message_length",
         "ohne Nachkommastellen), nicht 1000.5"),
        ('[bot]\nprefix = ""\n', "bot.prefix", "darf nicht leer sein"),
        ('[bot]\nprefix = "!!!!"\n', "bot.prefix", "darf höchstens 3 Zeichen lang sein"),
        ("[bot]\nprefix = 1\n", "bot.prefix", "muss ein Text in Anführungszeichen sein"),
        ("[bot]\nlanguage = 5\n", "bot.language", 'möglich: "de" oder "en"'),
        ('bot = "x"\n', "bot", "muss ein Abschnitt [bot] mit eigenen Schlüsseln sein"),
        ('[bot]\noffice_hours = "8-16"\n', "bot.office_hours", "Abschnitt [bot.office_hours]"),
        ('departments = ["it"]\n', "departments[1]", "Abschnitt [[departments]]"),
        ("[database]\npath = 5\n", "database.path", "muss ein Pfad in Anführungszeichen sein"),
        ('[meetups]\nreminders = "24h"\n', "meetups.reminders", '["24h"] statt „24h“'),
        ('undecryptable_notice_after = "1 Minute"\n', "matrix.undecryptable_notice_after",
         "ungültige Dauer „1 Minute“"),
        ("[tickets]\nreopen_days = 1979-05-27\n", "tickets.reopen_days", "ganze Zahl"),
    ],
)  # fmt: skip
def test_pydantic_errors_are_german(tmp_path: Path, text: str, key: str, expected: str) -> None:
    # Top-level keys go before [matrix]; keys of [matrix] and other sections after it.
    top_level = text.startswith(("bot =", "departments ="))
    error = load_error(tmp_path, text + MINIMAL_MATRIX if top_level else MINIMAL_MATRIX + text)
    assert (error.key, len(error.problems)) == (key, 1), error.problems
    assert expected in error.problem
    assert not ENGLISH.search(error.problem), error.problem


def test_secrets_never_appear_in_error_messages(tmp_path: Path) -> None:
    text = MINIMAL_MATRIX.replace('password = "geheim"', "password = 987654321")
    error = load_error(tmp_path, text + 'pickle_key = ["schluessel-xyz"]\n')
    assert [key for key, _ in error.problems] == ["matrix.password", "matrix.pickle_key"]
    assert "987654321" not in str(error) and "schluessel-xyz" not in str(error)
    assert "Text in Anführungszeichen" in error.problem


def test_unexpected_error_types_still_name_value_and_problem() -> None:
    from lotsenbot.config import _problem

    error: Any = {"type": "neu", "loc": ("bot", "x"), "msg": "Something odd", "input": "v"}
    assert _problem(error) == "ungültiger Wert „v“ (technische Meldung: Something odd)"
    error["loc"] = ("matrix", "password")
    assert "„v“" not in _problem(error)


def test_file_problems_have_no_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "fehlt.toml")
    assert info.value.key is None
    assert "nicht gefunden" in str(info.value)
    error = load_error(tmp_path, "[matrix\nhomeserver = 1\n")
    assert error.key is None
    assert "TOML" in error.problem
    path = tmp_path / "latin1.toml"
    path.write_bytes('[bot]\nprefix = "ä"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(path)


def test_allowed_servers(tmp_path: Path) -> None:
    text = MINIMAL_MATRIX + 'allowed_servers = ["stadt.de", "kreis.de"]\n'
    config = load_config(write(tmp_path, text))
    assert config.matrix.effective_allowed_servers == ["stadt.de", "kreis.de"]
    assert load_config(write(tmp_path, MINIMAL_MATRIX)).matrix.effective_allowed_servers == [
        "stadt.de"
    ]


def test_warnings_and_server_names(tmp_path: Path) -> None:
    base = '[matrix]\nhomeserver = "https://m.de"\nuser_id = "@b:m.de"\npassword = "x"\n'
    text = base + '[[departments]]\nid = "it"\nname = "IT"\npilots = ["@p:anders.de"]\n'
    warnings = load_config(write(tmp_path, text)).warnings()
    assert any("bot.coordinators" in w for w in warnings)  # triage would reach nobody
    assert any("@p:anders.de" in w and "allowed_servers" in w for w in warnings)
    error = load_error(tmp_path, base + 'allowed_servers = ["https://m.de"]\n')
    assert error.key == "matrix.allowed_servers" and "ohne https://" in error.problem
    error = load_error(tmp_path, base + '[faq]\nsynonyms_file = "fehlt.yaml"\n')
    assert error.key == "faq.synonyms_file"
