"""The ``!faq neu`` / ``!faq ändern`` form: parsing, merging with the import's rules, ids."""

from __future__ import annotations

import pytest

from lotsenbot.faq.editform import (
    FormError,
    merge,
    parse_form,
    render_form,
    similar_category,
    slug,
)
from lotsenbot.faq.kb import FaqEntry

DEPARTMENTS = {"it", "personal"}
LABELS = {"id": "ID", "question": "Frage", "alternatives": "Alternativen", "answer": "Antwort",
          "category": "Kategorie", "department": "Abteilung", "tags": "Tags"}  # fmt: skip

FULL = """Frage: Wie bestelle ich Toner?
Alternativen: Toner ist leer; Druckerpatrone bestellen
- Kartusche wechseln
Kategorie: Drucken und Scannen
Abteilung: it
Tags: toner, drucker; verbrauchsmaterial
Antwort:
Toner bestellen Sie im **Bestellportal**: <INTRANET-LINK>.

Hinweis: Altkartuschen kommen in die Sammelbox.
- erster Punkt
"""


def test_full_form_gives_every_field() -> None:
    form = parse_form(FULL, first_line=2)
    assert form.values == {
        "question": "Wie bestelle ich Toner?",
        "alternatives": ["Toner ist leer", "Druckerpatrone bestellen", "Kartusche wechseln"],
        "category": "Drucken und Scannen",
        "department": "it",
        "tags": ["toner", "drucker", "verbrauchsmaterial"],
        "answer": "Toner bestellen Sie im **Bestellportal**: <INTRANET-LINK>.\n\n"
        "Hinweis: Altkartuschen kommen in die Sammelbox.\n- erster Punkt",
    }
    assert form.lines["question"] == 2 and form.lines["answer"] == 8


def test_labels_are_case_insensitive_and_english_works_too() -> None:
    form = parse_form("QUESTION: What?\nantwort: So.\nCategory: X\nabteilung:\nstichworte: a")
    assert form.values == {"question": "What?", "answer": "So.", "category": "X",
                           "department": None, "tags": ["a"]}  # fmt: skip


def test_answer_may_start_on_the_label_line_and_links_are_not_labels() -> None:
    form = parse_form("Antwort: Siehe\nhttps://intranet.stadt.de/x\nKategorie: IT")
    assert form.values["answer"] == "Siehe\nhttps://intranet.stadt.de/x"
    assert form.values["category"] == "IT"


def test_duplicate_field_and_text_before_the_first_field_are_errors() -> None:
    form = parse_form("Frage: A\nKategorie: B\nfrage: C", first_line=2)
    assert form.errors == [FormError("duplicate_field", 4, {"label": "frage"})]
    form = parse_form("\nhallo\nFrage: A")
    assert form.errors == [FormError("text_before_field", 2, {"text": "hallo"})]


def test_every_problem_of_the_shape_is_reported_and_reading_goes_on() -> None:
    """Only the first problem was reported; a coordinator fixed it and met the next."""
    text = "hallo\nwelt\nFrage: A?\nFrage: B?\nnoch zu B\nKategorie: K\nfrage: C?\nAntwort:"
    form = parse_form(text, first_line=2)
    assert [(e.code, e.line) for e in form.errors] == [
        ("text_before_field", 2),  # once for the stray lines before the first field
        ("duplicate_field", 5),
        ("duplicate_field", 8),
    ]
    # The first value counts; the repeated field's lines are neither kept nor stray.
    assert form.values == {"question": "A?", "category": "K", "answer": ""}
    assert form.lines["answer"] == 9


def test_an_unknown_label_before_the_first_field_is_named() -> None:
    form = parse_form("Fragee: Wie geht das?\nAntwort: So.")
    assert form.errors == [FormError("unknown_label", 1, {"label": "Fragee"})]
    long_line = "x " * 50
    (error,) = parse_form(long_line + "\nFrage: A").errors
    assert len(error.params["text"]) <= 60 and error.params["text"].endswith("…")


def test_new_entry_is_validated_with_the_import_rules() -> None:
    result = merge(None, parse_form(FULL), DEPARTMENTS, entry_id="toner")
    assert result.ok
    (created,) = result.entries
    assert created.id == "toner" and created.department == "it"

    missing = merge(None, parse_form("Frage: Nur eine Frage", first_line=2), DEPARTMENTS,
                    entry_id="x")  # fmt: skip
    assert sorted(issue.code for issue in missing.errors) == ["missing_answer", "missing_field"]

    unknown = merge(None, parse_form(FULL.replace("it\n", "kantine\n"), first_line=2),
                    DEPARTMENTS, entry_id="toner")  # fmt: skip
    (issue,) = unknown.errors
    assert issue.code == "unknown_department" and issue.line == 6

    bad_id = merge(None, parse_form(FULL), DEPARTMENTS, entry_id="Toner bestellen")
    assert [issue.code for issue in bad_id.errors] == ["invalid_id"]


def test_change_keeps_fields_not_in_the_form_and_can_clear_the_department() -> None:
    base = FaqEntry(id="a", category="K", department="it", question="F?", answer="A",
                    alternatives=["x"], tags=["t"])  # fmt: skip
    result = merge(base, parse_form("Antwort: Neu\nAbteilung: -"), DEPARTMENTS)
    (changed,) = result.entries
    assert changed.answer == "Neu" and changed.department is None
    assert (changed.question, changed.alternatives, changed.tags) == ("F?", ["x"], ["t"])
    emptied = merge(base, parse_form("Frage:"), DEPARTMENTS)
    assert [issue.code for issue in emptied.errors] == ["empty_field"]


def test_rendered_form_parses_back_to_the_same_entry() -> None:
    entry = FaqEntry(id="vpn", category="Homeoffice", department="it",
                     question="VPN geht nicht: was tun?", alternatives=["Tunnel", "VPN tot"],
                     answer="1. Neu starten\n2. Anrufen: <TEL>\n\nHinweis: bitte notieren.",
                     tags=["vpn", "homeoffice"])  # fmt: skip
    text = render_form(entry, LABELS)
    assert text.splitlines()[0] == "Frage: VPN geht nicht: was tun?"
    result = merge(None, parse_form(text), DEPARTMENTS, entry_id="vpn")
    assert result.entries == [entry]


def test_a_label_inside_the_answer_is_the_answers_text() -> None:
    """A line "Frage: …" inside an answer, once the question was given, is part of the
    answer: neither cut off nor a "field twice" error. Before the answer it still is one."""
    form = parse_form("Frage: A?\nAntwort: Text\nFrage: noch eine?\nID: 5", new_entry=False)
    assert form.values["answer"] == "Text\nFrage: noch eine?\nID: 5"
    # A new entry's id may come last, after the answer, as the template suggests.
    form = parse_form("Frage: A?\nAntwort: Im Portal.\nID: toner")
    assert (form.values["answer"], form.values["id"]) == ("Im Portal.", "toner")
    form = parse_form("Frage: A?\nFrage: noch eine?\nAntwort: Text")
    assert [error.code for error in form.errors] == ["duplicate_field"]


def test_an_answer_with_label_like_lines_survives_the_round_trip() -> None:
    entry = FaqEntry(
        id="portal",
        category="Online-Dienste",
        question="Wo ist das Portal?",
        alternatives=["Portal finden"],
        tags=["portal"],
        answer="So geht es:\nAlternative: im Portal unter Service.\nID: Ihre Kennung",
    )
    form = parse_form(render_form(entry, LABELS), new_entry=False)
    result = merge(None, form, DEPARTMENTS, entry_id="portal")
    assert result.entries == [entry]


@pytest.mark.parametrize(
    ("question", "taken", "expected"),
    [
        ("Wie bestelle ich Toner für den Drucker?", (), "bestelle-toner-drucker"),
        ("Wie bestelle ich Toner?", ("bestelle-toner",), "bestelle-toner-2"),
        ("Wie bestelle ich Toner?", ("bestelle-toner", "bestelle-toner-2"), "bestelle-toner-3"),
        ("Was ist das?", (), "was-ist-das"),
        ("Größe ändern", (), "groesse-aendern"),
        ("Café-Karte", (), "cafe-karte"),
        ("?", (), "eintrag"),
    ],
)
def test_slug(question: str, taken: tuple[str, ...], expected: str) -> None:
    assert slug(question, taken) == expected


def test_slug_is_short_enough_for_an_id() -> None:
    value = slug("Verwaltungsdigitalisierungsstrategie " * 5)
    assert 0 < len(value) <= 48
    assert FaqEntry(id=value, category="x", question="y", answer="z").id == value


CATEGORIES = ["Arbeitsplatz", "Drucken und Scannen", "E-Akte", "Homeoffice", "Konto und Anmeldung"]


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("Arbietsplatz", "Arbeitsplatz"),  # two letters swapped
        ("arbeitsplatz", "Arbeitsplatz"),  # only the case differs
        ("Arbeitsplätze", "Arbeitsplatz"),
        ("Homeofice", "Homeoffice"),
        ("E-Akten", "E-Akte"),
        ("Kantine", None),  # genuinely new
        ("Drucker", None),
        ("Arbeitsplatz", None),  # not new at all
    ],
)
def test_similar_category(name: str, meant: str | None) -> None:
    assert similar_category(name, CATEGORIES) == meant


def test_similar_category_takes_the_closest_and_ignores_order() -> None:
    assert similar_category("Konto", ["Kontos", "Konten"]) == "Kontos"
    assert similar_category("Konto", ["Konten", "Kontos"]) == "Kontos"
    assert similar_category("Aaa", []) is None
