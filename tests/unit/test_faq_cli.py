"""``lotsenbot faq import|export|ask`` on a real database file, through the CLI entry point.

A broken file must never import anything (exit 2, every problem with its line, in German);
a good file imports idempotently; ``ask`` answers in JSON, one line per question.
"""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from pathlib import Path

import pytest

from lotsenbot.cli import main
from lotsenbot.faq.kb import parse_yaml

CONFIG = """
[matrix]
homeserver = "http://127.0.0.1:1"
user_id = "@lotsenbot:stadt.de"
password = "x"

[database]
path = "daten/bot.db"

[bot]
coordinators = ["@koordination:stadt.de"]

[[departments]]
id = "it"
name = "IT-Service"

[[departments]]
id = "personal"
name = "Personal"
"""

GOOD = """\
- id: passwort-vergessen
  category: Konto
  department: it
  question: Ich habe mein Passwort vergessen
  alternatives: [Passwort zurücksetzen]
  answer: |
    Im Self-Service-Portal zurücksetzen.
  tags: [passwort]
- id: urlaub
  category: Personal
  department: personal
  question: Wie beantrage ich Urlaub?
  answer: Im Personalportal.
- id: drucker
  category: Drucken
  question: Der Drucker druckt nicht
  answer: Neu starten.
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A configuration whose database exists: the faq commands never create one."""
    path = tmp_path / "config.toml"
    path.write_text(CONFIG, encoding="utf-8")
    assert main(["migrate", "--config", str(path)]) == 0
    return path


def run(config: Path, *args: str) -> int:
    return main(["faq", *args, "--config", str(config)])


def entries(config: Path) -> dict[str, str]:
    database = config.parent / "daten" / "bot.db"
    if not database.exists():
        return {}
    with sqlite3.connect(database) as conn:
        return dict(conn.execute("SELECT id, answer FROM faq_entries").fetchall())


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_import_reports_counts_and_is_idempotent(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kb = write(tmp_path, "faq.yaml", GOOD)
    assert run(config, "import", str(kb)) == 0
    assert "3 neu, 0 geändert, 0 unverändert, 0 entfernt" in capsys.readouterr().out
    assert run(config, "import", str(kb)) == 0
    assert "0 neu, 0 geändert, 3 unverändert, 0 entfernt" in capsys.readouterr().out

    smaller = write(tmp_path, "klein.yaml", GOOD.split("- id: urlaub")[0].replace(
        "Im Self-Service-Portal zurücksetzen.", "Anrufen."))  # fmt: skip
    assert run(config, "import", str(smaller)) == 0
    assert "0 neu, 1 geändert, 0 unverändert, 0 entfernt" in capsys.readouterr().out
    assert set(entries(config)) == {"passwort-vergessen", "urlaub", "drucker"}
    assert run(config, "import", str(smaller), "--replace") == 0
    assert "0 neu, 0 geändert, 1 unverändert, 2 entfernt" in capsys.readouterr().out
    assert entries(config) == {"passwort-vergessen": "Anrufen."}

    with sqlite3.connect(config.parent / "daten" / "bot.db") as conn:
        audits = conn.execute("SELECT actor, action, details FROM audit_log ORDER BY id").fetchall()
    assert [a[1] for a in audits] == ["faq.import"] * 3  # the no-op re-import is not audited
    assert all(a[0].startswith("cli") for a in audits)
    assert json.loads(audits[-1][2])["removed"] == ["drucker", "urlaub"]
    assert json.loads(audits[-1][2])["old"]["urlaub"]["answer"] == "Im Personalportal."


BROKEN = {
    "kaputt.yaml": (GOOD + "- id: [unterbrochen\n", ["Zeile 19", "YAML-Datei ist fehlerhaft"]),
    "doppelt.yaml": (
        GOOD + GOOD.split("- id: urlaub")[0],
        ["Zeile 18", "„passwort-vergessen“ kommt doppelt vor (zuerst in Zeile 1)"],
    ),
    "ohne-antwort.yaml": (
        GOOD.replace("  answer: Neu starten.\n", ""),
        ["Zeile 14", "Der Eintrag „drucker“ hat keine Antwort"],
    ),
    "abteilung.yaml": (
        GOOD.replace("department: personal", "department: kantine"),
        ["Zeile 11", "unbekannte Abteilung „kantine“. Bekannt sind: it, personal"],
    ),
    "spalte.csv": (
        "id,category,question,antwort\npw,Konto,Passwort?,Portal\n",
        ["Zeile 1", "unbekannte Spalte „antwort“", "fehlt die Spalte „answer“"],
    ),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_files_import_nothing(
    name: str, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, expected = BROKEN[name]
    path = write(tmp_path, name, text)
    assert run(config, "import", str(path)) == 2
    err = capsys.readouterr().err
    for fragment in expected:
        assert fragment in err, err
    assert "nichts wurde importiert" in err
    assert entries(config) == {}  # the database was not even created


def test_a_broken_file_leaves_an_existing_faq_alone(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "import", str(write(tmp_path, "gut.yaml", GOOD))) == 0
    before = entries(config)
    changed = GOOD.replace("Neu starten.", "Anders.").replace(
        "department: personal", "department: x"
    )
    assert run(config, "import", str(write(tmp_path, "halb.yaml", changed)), "--replace") == 2
    assert entries(config) == before


def test_csv_import_and_export_round_trip(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "import", str(write(tmp_path, "gut.yaml", GOOD))) == 0
    for name in ("export.csv", "export.yaml"):
        assert run(config, "export", str(tmp_path / name)) == 0
        assert f"3 Einträge nach {tmp_path / name} exportiert" in capsys.readouterr().out
    exported = parse_yaml((tmp_path / "export.yaml").read_text("utf-8"))
    assert sorted(e.id for e in exported.entries) == ["drucker", "passwort-vergessen", "urlaub"]
    assert run(config, "import", str(tmp_path / "export.csv")) == 0
    assert "0 neu, 0 geändert, 3 unverändert" in capsys.readouterr().out
    assert run(config, "export", str(tmp_path / "export.txt")) == 2


def test_ask_prints_json_best_first(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "import", str(write(tmp_path, "gut.yaml", GOOD))) == 0
    capsys.readouterr()
    assert run(config, "ask", "Passwort vergessen", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["question"] == "Passwort vergessen" and data["decision"] == "answer"
    assert data["results"][0]["id"] == "passwort-vergessen"
    scores = [r["score"] for r in data["results"]]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)


def test_ask_reads_stdin_line_by_line_in_order(
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert run(config, "import", str(write(tmp_path, "gut.yaml", GOOD))) == 0
    capsys.readouterr()
    questions = ["Wie beantrage ich Urlaub?", "Wer gewinnt die Bundesliga?", "", "Drucker kaputt"]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(questions) + "\n"))
    assert run(config, "ask", "--json") == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["question"] for line in lines] == questions
    assert lines[0]["results"][0]["id"] == "urlaub" and lines[0]["decision"] == "answer"
    assert lines[1]["decision"] == "none"
    assert lines[2] == {"question": "", "decision": "none", "results": []}
    assert lines[3]["results"][0]["id"] == "drucker"


def test_cli_import_reaches_a_running_bot_index(config: Path, tmp_path: Path) -> None:
    """The bot's feature compares the change token before each question, so an import while
    it runs is picked up without a restart (checked here on the token itself)."""
    from lotsenbot.faq import store
    from lotsenbot.storage.db import Database

    async def token() -> int:
        db = Database(config.parent / "daten" / "bot.db")
        await db.open()
        try:
            return await store.generation(db.conn)
        finally:
            await db.close()

    assert run(config, "import", str(write(tmp_path, "gut.yaml", GOOD))) == 0
    first = asyncio.run(token())
    assert run(config, "import", str(tmp_path / "gut.yaml")) == 0
    assert asyncio.run(token()) == first  # nothing changed: the index stays valid
    assert run(config, "import", str(write(tmp_path, "neu.yaml", GOOD.replace("Neu", "Aus")))) == 0
    assert asyncio.run(token()) != first


def test_export_of_one_entry_says_eintrag(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = GOOD.split("- id: urlaub")[0]
    assert run(config, "import", str(write(tmp_path, "eins.yaml", one))) == 0
    assert run(config, "export", str(tmp_path / "export.yaml")) == 0
    assert f"1 Eintrag nach {tmp_path / 'export.yaml'} exportiert." in capsys.readouterr().out
