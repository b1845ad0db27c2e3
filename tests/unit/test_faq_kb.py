"""Knowledge-base import validation, export and the shipped starter knowledge base."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from lotsenbot.faq.kb import (
    FaqEntry,
    ImportIssue,
    dump_csv,
    dump_yaml,
    load_file,
    load_starter_kb,
    parse_csv,
    parse_yaml,
    render_issue,
    render_issues,
)

DEPARTMENTS = {"it", "infosec", "datenschutz", "organisation", "personal", "digitalisierung"}

GOOD_YAML = """\
- id: passwort-vergessen
  category: Konto
  department: it
  question: Passwort vergessen?
  alternatives: [Kennwort vergessen]
  answer: |
    Im **Self-Service-Portal** zurücksetzen:
    <SELF-SERVICE-LINK>
  tags: [passwort]
- id: lotse-finden
  category: Lotsennetzwerk
  question: Wer ist meine Lotsin?
  answer: Schreiben Sie `!lotse`.
"""


def _codes(issues: list[ImportIssue]) -> list[tuple[str, int | None]]:
    return [(issue.code, issue.line) for issue in issues]


def test_valid_yaml_imports_all_entries() -> None:
    result = parse_yaml(GOOD_YAML, DEPARTMENTS)
    assert result.ok
    assert [entry.id for entry in result.entries] == ["passwort-vergessen", "lotse-finden"]
    first = result.entries[0]
    assert first.department == "it" and first.alternatives == ["Kennwort vergessen"]
    assert result.entries[1].department is None and result.entries[1].tags == []


def test_broken_yaml_reports_the_line() -> None:
    text = "- id: a\n  category: X\n  question: Frage\n   answer: kaputt eingerückt\n"
    result = parse_yaml(text)
    assert not result.ok and result.entries == []
    [issue] = result.errors
    assert issue.code == "yaml_syntax" and issue.line == 4
    assert render_issue(issue).startswith("Zeile 4: Die YAML-Datei ist fehlerhaft")


def test_yaml_that_is_not_a_list_is_rejected() -> None:
    assert _codes(parse_yaml("id: a\nquestion: b\n").errors) == [("not_a_list", 1)]
    assert _codes(parse_yaml("").errors) == [("empty", None)]


def test_duplicate_ids_name_both_lines_and_nothing_is_imported() -> None:
    text = GOOD_YAML + "- id: passwort-vergessen\n  category: X\n  question: Y\n  answer: Z\n"
    result = parse_yaml(text)
    assert result.entries == []
    assert _codes(result.errors) == [("duplicate_id", 14)]  # GOOD_YAML has 13 lines
    assert result.errors[0].params["first_line"] == 1
    assert render_issue(result.errors[0]) == (
        "Zeile 14: Die ID „passwort-vergessen“ kommt doppelt vor (zuerst in Zeile 1)."
    )


def test_missing_or_empty_answer_is_reported_per_entry() -> None:
    text = (
        "- id: a\n  category: X\n  question: Frage A\n"
        "- id: b\n  category: X\n  question: Frage B\n  answer: '  '\n"
    )
    result = parse_yaml(text)
    assert _codes(result.errors) == [("missing_answer", 1), ("missing_answer", 7)]
    assert render_issues(result.errors)[0] == (
        "Zeile 1: Der Eintrag „a“ hat keine Antwort (Feld „answer“ fehlt oder ist leer)."
    )


def test_unknown_department_lists_the_known_ones() -> None:
    text = "- id: a\n  category: X\n  department: kantine\n  question: F\n  answer: A\n"
    result = parse_yaml(text, {"it", "personal"})
    assert _codes(result.errors) == [("unknown_department", 3)]
    message = render_issue(result.errors[0])
    assert "„kantine“" in message and "it, personal" in message
    # Without a list of departments there is nothing to check against.
    assert parse_yaml(text).ok


def test_all_problems_are_collected_at_once() -> None:
    text = (
        "- id: Ungültige ID\n  category: X\n  question: F\n  answer: A\n"
        "- id: b\n  question: F\n  answer: A\n  farbe: blau\n"
        "- id: c\n  category: X\n  question: F\n  answer: A\n  tags: nur-ein-text\n"
        "- nur ein Text\n"
    )
    result = parse_yaml(text)
    assert result.entries == []
    assert sorted(_codes(result.errors)) == [
        ("entry_not_mapping", 14),
        ("expected_list", 13),
        ("invalid_id", 1),
        ("missing_field", 5),
        ("unknown_field", 8),
    ]
    assert all(not message.startswith("Line") for message in render_issues(result.errors))


def test_duplicate_key_inside_an_entry_is_reported() -> None:
    text = "- id: a\n  category: X\n  question: F\n  answer: A\n  answer: B\n"
    assert _codes(parse_yaml(text).errors) == [("duplicate_key", 5)]


def test_csv_import_with_lists_and_multiline_answer() -> None:
    text = (
        "id,category,department,question,alternatives,answer,tags\n"
        'a,Konto,it,Passwort vergessen?,Kennwort vergessen; PW weg,"Zeile eins\nZeile zwei",'
        "passwort;konto\n"
        "b,Netzwerk,,Wer ist meine Lotsin?,,Schreiben Sie !lotse,\n"
    )
    result = parse_csv(text, DEPARTMENTS)
    assert result.ok
    first, second = result.entries
    assert first.alternatives == ["Kennwort vergessen", "PW weg"]
    assert first.answer == "Zeile eins\nZeile zwei" and first.tags == ["passwort", "konto"]
    assert second.department is None and second.alternatives == []


def test_csv_semicolon_delimiter_from_german_excel() -> None:
    text = 'id;category;question;answer;tags\na;Konto;Frage?;Antwort;"x;y"\n'
    result = parse_csv(text)
    assert result.ok and result.entries[0].tags == ["x", "y"]


def test_csv_wrong_and_missing_columns() -> None:
    text = "id,kategorie,question,answer\na,X,F,A\n"
    result = parse_csv(text)
    assert result.entries == []
    assert sorted(_codes(result.errors)) == [("csv_missing_column", 1), ("csv_unknown_column", 1)]
    messages = render_issues(result.errors)
    assert any("unbekannte Spalte „kategorie“" in m for m in messages)
    assert any("fehlt die Spalte „category“" in m for m in messages)


def test_csv_rows_report_their_starting_line() -> None:
    text = 'id,category,question,answer\na,X,F,"mehr-\nzeilig"\na,X,F,A\nc,X,F\nd,X,F,\n'
    result = parse_csv(text, DEPARTMENTS)
    assert result.entries == []
    assert _codes(result.errors) == [
        ("duplicate_id", 4),
        ("csv_row_length", 5),
        ("missing_answer", 6),
    ]
    assert render_issue(result.errors[1]) == (
        "Zeile 5: Die Zeile hat 3 statt 4 Spalten. Die Datei trennt die Spalten mit „,“: "
        "Steht ein „,“ im Text ohne Anführungszeichen?"
    )


def test_csv_row_length_names_the_delimiter_of_the_file() -> None:
    """German Excel writes semicolons; the hint must not talk about commas then."""
    text = 'id;category;question;answer;tags\na;X;F;A;"passwort; konto"\nb;X;F;A;passwort; konto\n'
    result = parse_csv(text, DEPARTMENTS)
    assert _codes(result.errors) == [("csv_row_length", 3)]
    rendered = render_issue(result.errors[0])
    assert "mit „;“" in rendered and "Steht ein „;“ im Text" in rendered
    assert "Komma" not in rendered and "„,“" not in rendered
    assert "“;”" in render_issue(result.errors[0], "en")


def test_yaml_and_csv_export_round_trip() -> None:
    entries = parse_yaml(GOOD_YAML).entries
    assert parse_yaml(dump_yaml(entries)).entries == entries
    assert parse_csv(dump_csv(entries)).entries == entries
    assert "answer: |" in dump_yaml(entries)


def test_load_file_dispatches_and_rejects_other_formats(tmp_path: Path) -> None:
    (tmp_path / "kb.yml").write_text(GOOD_YAML, "utf-8")
    (tmp_path / "kb.csv").write_text(dump_csv(parse_yaml(GOOD_YAML).entries), "utf-8")
    (tmp_path / "kb.xlsx").write_bytes(b"PK")
    (tmp_path / "latin1.csv").write_bytes("id,category,question,answer\na,Ä,F,A\n".encode("cp1252"))
    assert load_file(tmp_path / "kb.yml").ok
    assert load_file(tmp_path / "kb.csv").ok
    assert _codes(load_file(tmp_path / "kb.xlsx").errors) == [("unknown_format", None)]
    assert _codes(load_file(tmp_path / "latin1.csv").errors) == [("not_utf8", None)]
    assert _codes(load_file(tmp_path / "missing.yaml").errors) == [("file_unreadable", None)]


def test_english_rendering_exists_for_every_code() -> None:
    issue = ImportIssue("duplicate_id", 3, {"id": "a", "first_line": 1})
    assert (
        render_issue(issue, "en") == "Line 3: The ID “a” appears more than once (first on line 1)."
    )


def test_entry_model_rejects_unknown_fields() -> None:
    with pytest.raises(ValueError):
        FaqEntry.model_validate(
            {"id": "a", "category": "X", "question": "F", "answer": "A", "extra": 1}
        )


def test_starter_kb_validates_with_demo_departments() -> None:
    entries = load_starter_kb(DEPARTMENTS)
    assert len(entries) >= 40
    assert {entry.department for entry in entries} <= DEPARTMENTS
    assert {"lotse-finden", "lotse-werden"} <= {entry.id for entry in entries}
    assert all("http" not in entry.answer for entry in entries)


def test_starter_answers_have_no_line_breaks_inside_a_paragraph() -> None:
    """A line break in an answer stays a line break in Element ("hilft der IT-Service
    unter<br>…"): the starter knowledge base writes one paragraph per line."""
    block = ("- ", "* ", "|", ">", "#")
    for entry in load_starter_kb(DEPARTMENTS):
        lines = entry.answer.splitlines()
        for before, line in pairwise(lines):
            if before.strip() and line.strip() and not line.lstrip().startswith(block):
                assert before.lstrip().startswith("|") or line[0].isdigit(), (entry.id, line)
