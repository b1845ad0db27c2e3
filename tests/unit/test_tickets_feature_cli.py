"""``lotsenbot route``: routing a request from the command line, creating nothing."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from lotsenbot.cli import main

CONFIG = """
[matrix]
homeserver = "http://127.0.0.1:1"
user_id = "@lotsenbot:stadt.de"
password = "x"

[database]
path = "bot.db"

[bot]
coordinators = ["@koordination:stadt.de"]

[[departments]]
id = "it"
name = "IT-Service"
description = "Arbeitsplatzrechner, Drucker und Telefonie der Verwaltung."
keywords = ["Drucker", "Laptop", "Passwort", "VPN"]
specialist = true

[[departments]]
id = "personal"
name = "Personal"
description = "Personalangelegenheiten, Arbeitszeit und Fortbildung."
keywords = ["Urlaub", "Arbeitszeit", "Fortbildung"]
specialist = true

[[departments]]
id = "buergeramt"
name = "Bürgeramt"
description = "Meldewesen und Ausweise."
keywords = ["Meldewesen", "Personalausweis"]
"""

IT_TEXT = "Mein Drucker druckt nicht mehr, und der Laptop findet das VPN nicht"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def test_one_text_as_json(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["route", IT_TEXT, "--json", "--config", str(config)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"decision", "department", "scores"}
    assert (result["decision"], result["department"]) == ("route", "it")
    assert set(result["scores"]) == {"it", "personal", "buergeramt"}
    assert result["scores"]["it"] > result["scores"]["personal"]
    assert not (config.parent / "bot.db").exists()  # creates nothing


def test_lines_from_stdin_in_order(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [IT_TEXT, "Ich habe da mal eine Frage", "Wie beantrage ich Urlaub und Fortbildung?"]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    assert main(["route", "--json", "--config", str(config)]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["department"] for r in results] == ["it", None, "personal"]
    assert results[1]["decision"] == "triage"


def test_requester_department_and_plain_output(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "Ich habe da mal eine Frage"
    assert main(["route", text, "--department", "buergeramt", "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith("buergeramt [own_department]")
    assert main(["route", text, "--department", "mond", "--config", str(config)]) == 1
    assert "mond" in capsys.readouterr().err
