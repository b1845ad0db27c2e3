"""The command line as admins meet it: its messages, its exit codes, and what it must not
create on its own."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from lotsenbot.cli import EXIT_CONFIG, EXIT_ERROR, EXIT_OK, main
from lotsenbot.config import ENV_ACCESS_TOKEN, ENV_PASSWORD, ENV_PICKLE_KEY

CONFIG = """
[matrix]
homeserver = "https://matrix.stadt.de"
user_id = "@lotsenbot:stadt.de"
password = "geheim"

[database]
path = "daten/bot.db"
"""

BROKEN = """
[matrix]
homeserver = "matrix.stadt.de"
user_id = "@lotsenbot:stadt.de"
password = "geheim"

[bot]
coordinators = "@koordination:stadt.de"

[tickets]
reopen_days = "vierzehn"
"""

ONE_EACH = """
[bot]
coordinators = ["@koordination:stadt.de"]

[[departments]]
id = "it"
name = "IT"
pilots = ["@lotsin:stadt.de"]
"""


@pytest.fixture(autouse=True)
def _no_secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (ENV_PASSWORD, ENV_ACCESS_TOKEN, ENV_PICKLE_KEY):
        monkeypatch.delenv(name, raising=False)


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- configuration errors ----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["check-config", "run", "migrate"])
def test_config_errors_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """``run`` reports through the same path as ``check-config``: every mistake, one line
    with file and key, exit code 2 and no traceback."""
    path = write(tmp_path, BROKEN)
    assert main([command, "--config", str(path)]) == EXIT_CONFIG
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines == [
        f"Konfigurationsfehler: {path}: matrix.homeserver: muss mit http:// oder https:// "
        "beginnen, z. B. https://matrix.stadt.de",
        f"Konfigurationsfehler: {path}: bot.coordinators: muss eine Liste in eckigen Klammern "
        'sein, auch mit nur einem Eintrag: ["@koordination:stadt.de"] statt '
        "„@koordination:stadt.de“",
        f"Konfigurationsfehler: {path}: tickets.reopen_days: muss eine ganze Zahl sein "
        "(ohne Anführungszeichen), nicht „vierzehn“",
        f"3 Fehler in {path}.",
    ]
    assert "Traceback" not in captured.err


def test_a_single_error_has_no_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, CONFIG + '[logging]\nlevel = "LAUT"\n')
    assert main(["check-config", "--config", str(path)]) == EXIT_CONFIG
    assert capsys.readouterr().err.splitlines() == [
        f"Konfigurationsfehler: {path}: logging.level: „LAUT“ ist nicht erlaubt; möglich: "
        '"DEBUG", "INFO", "WARNING" oder "ERROR"'
    ]


# -- check-config ------------------------------------------------------------------------------


def test_check_config_counts_in_the_right_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, CONFIG + ONE_EACH)
    (tmp_path / "daten").mkdir()
    assert main(["migrate", "--config", str(path)]) == EXIT_OK
    capsys.readouterr()
    assert main(["check-config", "--config", str(path)]) == EXIT_OK
    assert capsys.readouterr().out == (
        f"{path}: in Ordnung – 1 Abteilung, 1 Koordinatorin oder Koordinator.\n"
    )
    two = ONE_EACH.replace('"@koordination:stadt.de"]', '"@k1:stadt.de", "@k2:stadt.de"]')
    two += '[[departments]]\nid = "ba"\nname = "Bürgeramt"\npilots = ["@lotse:stadt.de"]\n'
    write(tmp_path, CONFIG + two)
    assert main(["check-config", "--config", str(path)]) == EXIT_OK
    assert "in Ordnung – 2 Abteilungen, 2 Koordinator*innen." in capsys.readouterr().out


def test_check_config_notes_a_database_that_does_not_exist_yet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, CONFIG + ONE_EACH)
    assert main(["check-config", "--config", str(path)]) == EXIT_OK  # a note, not an error
    out = capsys.readouterr().out
    database = tmp_path / "daten" / "bot.db"
    assert f"Hinweis: Die Datenbank {database} gibt es noch nicht." in out
    assert "lotsenbot migrate" in out and "[database] path" in out
    assert not (tmp_path / "daten").exists()  # checking creates nothing
    assert main(["migrate", "--config", str(path)]) == EXIT_OK
    capsys.readouterr()
    assert main(["check-config", "--config", str(path)]) == EXIT_OK
    assert "Datenbank" not in capsys.readouterr().out


# -- commands that need the bot's database -----------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["faq", "export", "export.csv"],
        ["faq", "export", "export.yaml"],
        ["faq", "ask", "wie ändere ich mein Passwort"],
        ["faq", "import", "faq.yaml"],
        ["purge", "--dry-run"],
        ["backup", "sicherung.db"],
    ],
)
def test_commands_refuse_a_missing_database(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
) -> None:
    """A wrong ``[database] path`` must not quietly create an empty database (and its
    folders) that the bot never reads, nor export or import into one."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "- id: a\n  category: X\n  question: Frage\n  answer: Antwort\n", "faq.yaml")
    path = write(tmp_path, CONFIG.replace("daten/bot.db", "falsch/bot.db"))
    assert main([*command, "--config", str(path)]) == EXIT_ERROR
    captured = capsys.readouterr()
    database = tmp_path / "falsch" / "bot.db"
    assert captured.err.startswith(f"Datenbank {database} nicht gefunden. Stimmt [database] path")
    assert "lotsenbot migrate" in captured.err
    assert captured.out == ""
    assert not (tmp_path / "falsch").exists()
    assert not (tmp_path / "export.csv").exists() and not (tmp_path / "export.yaml").exists()


def test_migrate_creates_the_database_for_the_faq_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, CONFIG)
    assert main(["migrate", "--config", str(path)]) == EXIT_OK
    assert (tmp_path / "daten" / "bot.db").is_file()
    assert main(["faq", "export", str(tmp_path / "leer.yaml"), "--config", str(path)]) == EXIT_OK
    assert "0 Einträge nach" in capsys.readouterr().out


# -- commands --update-readme ------------------------------------------------------------------


def test_update_readme_outside_the_repository(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["commands", "--update-readme"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.startswith(f"README.md nicht gefunden im Ordner {tmp_path}.")
    assert "Traceback" not in err
    assert not (tmp_path / "README.md").exists()


def test_update_readme_leaves_a_foreign_readme_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    readme = write(tmp_path, "# Unser Intranet\n", "README.md")
    assert main(["commands", "--update-readme"]) == EXIT_CONFIG
    assert "keinen Bereich für die Befehlsübersicht" in capsys.readouterr().err
    assert readme.read_text("utf-8") == "# Unser Intranet\n"
    readme.write_text("# Kopf\n<!-- commands:start -->\nVERALTET\n<!-- commands:end -->\nEnde\n")
    assert main(["commands", "--update-readme"]) == EXIT_OK
    text = readme.read_text("utf-8")
    assert "VERALTET" not in text and "`!hilfe [Befehl]`" in text and text.endswith("Ende\n")


# -- argparse in German ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "lotsenbot: Fehler: es fehlt: BEFEHL"),
        (["starten"], "lotsenbot: Fehler: BEFEHL: „starten“ gibt es nicht (möglich: "),
        (["run", "--bla"], "lotsenbot: Fehler: unbekannte Angaben: --bla"),
        (["faq"], "lotsenbot faq: Fehler: es fehlt: AKTION"),
        (["faq", "import"], "lotsenbot faq import: Fehler: es fehlt: DATEI"),
        (["faq", "export", "x.csv", "--config"], "Fehler: --config: hier fehlt ein Wert"),
        (["demo", "--port", "acht"], "Fehler: --port: ungültiger Wert „acht“"),
        (["chat"], "lotsenbot chat: Fehler: es fehlt: --user"),
    ],
)
def test_argparse_speaks_german(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("Aufruf: lotsenbot")
    assert expected in err
    assert "Hilfe: lotsenbot" in err
    for english in ("usage:", "error:", "required", "invalid", "unrecognized", "expected"):
        assert english not in err


def test_help_is_german_and_argparse_is_restored(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["faq", "import", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("Aufruf: lotsenbot faq import")
    assert "Optionen:" in out and "diese Hilfe anzeigen und beenden" in out
    assert "--config DATEI" in out
    # Other parsers in the same process keep argparse's own texts.
    other = argparse.ArgumentParser(prog="anders")
    assert other.format_usage().startswith("usage: anders")
