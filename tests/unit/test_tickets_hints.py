"""FAQ department hints: departments of the closest entries, one pair each, best first."""

from __future__ import annotations

import pytest

from lotsenbot.faq.kb import FaqEntry, load_starter_kb
from lotsenbot.faq.search import FaqIndex
from lotsenbot.tickets.hints import department_hints


def _entry(entry_id: str, question: str, department: str | None) -> FaqEntry:
    return FaqEntry(
        id=entry_id,
        category="Test",
        department=department,
        question=question,
        answer="Eine Antwort.",
    )


@pytest.fixture()
def index() -> FaqIndex:
    faq = FaqIndex()
    faq.build(
        [
            _entry("drucker-stau", "Der Drucker hat einen Papierstau", "it"),
            _entry("drucker-toner", "Der Drucker braucht neuen Toner", "it"),
            _entry("drucker-datenschutz", "Darf der Drucker im Flur Bescheide drucken?", "ds"),
            _entry("drucker-allgemein", "Wo steht der nächste Drucker?", None),
            _entry("urlaub", "Wie beantrage ich Urlaub?", "personal"),
        ]
    )
    return faq


def test_one_pair_per_department_with_its_best_entry(index: FaqIndex) -> None:
    hints = department_hints(index, "Papierstau im Drucker")
    departments = [department for department, _score in hints]
    assert departments[0] == "it"
    assert len(departments) == len(set(departments))
    best_it = max(
        score
        for entry_id, score in index.rank("Papierstau im Drucker", 5)
        if entry_id.startswith("drucker-s")
    )
    assert hints[0][1] == pytest.approx(best_it)
    assert [score for _d, score in hints] == sorted((s for _d, s in hints), reverse=True)


def test_entries_without_department_give_no_hint(index: FaqIndex) -> None:
    hints = department_hints(index, "Wo steht der nächste Drucker?")
    assert index.rank("Wo steht der nächste Drucker?", 1)[0][0] == "drucker-allgemein"
    assert None not in {department for department, _score in hints}


def test_limit_bounds_the_entries_looked_at(index: FaqIndex) -> None:
    assert department_hints(index, "Drucker", limit=0) == []
    assert len(department_hints(index, "Drucker", limit=1)) == 1
    assert department_hints(index, "Wie beantrage ich Urlaub?")[0][0] == "personal"


def test_unrelated_text_gives_no_hints(index: FaqIndex) -> None:
    assert department_hints(index, "Xylophon Quantenschaum") == []


def test_starter_kb_hints_use_known_department_ids() -> None:
    faq = FaqIndex()
    faq.build(load_starter_kb())
    hints = department_hints(faq, "Ich habe auf einen Link in einer verdächtigen Mail geklickt")
    assert hints[0][0] == "infosec"
    assert all(0.0 < score <= 1.0 for _department, score in hints)
