"""`!protokoll` summaries of audit details: readable, short, never raw JSON."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest

from lotsenbot.faq.kb import FaqEntry
from lotsenbot.faq.store import entry_snapshot
from lotsenbot.privacy.audit_summary import SUMMARY_LIMIT, summarize
from lotsenbot.texts import Catalogue

BERLIN = ZoneInfo("Europe/Berlin")
DE = Catalogue("de")
OLD = FaqEntry(id="bot-hilfe", category="Lotsennetzwerk", question="Was kann der Bot?",
               alternatives=["Hilfe zum Bot"], answer="Schreiben Sie **!hilfe** in den Chat.",
               tags=["bot"])  # fmt: skip


def snapshot(entry: FaqEntry, **changes: Any) -> dict[str, Any]:
    value = entry_snapshot(entry.model_copy(update=changes))
    assert value is not None
    return value


def summary(action: str, details: Any, lang: str = "de") -> str:
    return summarize(action, details, Catalogue(lang), BERLIN)


def test_a_changed_entry_names_each_field_with_old_and_new_value_shortened() -> None:
    new = snapshot(OLD, category="Arbeitsplatz", department="it",
                   answer="Die Übersicht aller Befehle zeigt der Befehl !hilfe, auch im "
                          "Gruppenraum, und die Koordination hilft weiter.")  # fmt: skip
    text = summary("faq.update", {"old": snapshot(OLD), "new": new,
                                  "fields": ["category", "department", "answer"]})  # fmt: skip
    assert text == (
        "Kategorie: „Lotsennetzwerk“ → „Arbeitsplatz“; Abteilung: – → „it“; Antwort: "
        "„Schreiben Sie **!hilfe** in den Chat.“ → „Die Übersicht aller Befehle zeigt der …“"
    )
    assert "{" not in text and '"old"' not in text


def test_list_fields_show_what_was_added_and_removed() -> None:
    new = snapshot(OLD, alternatives=["Was macht der Lotsenbot?"], tags=["bot", "hilfe"])
    text = summary("faq.update", {"old": snapshot(OLD), "new": new,
                                  "fields": ["alternatives", "tags"]})  # fmt: skip
    assert text == ("Alternativen: + „Was macht der Lotsenbot?“, − „Hilfe zum Bot“; "
                    "Tags: + „hilfe“")  # fmt: skip


def test_created_deleted_and_learnt_entries() -> None:
    created = summary("faq.create", {"old": None, "new": snapshot(OLD)})
    assert created == "Frage: „Was kann der Bot?“; Kategorie: „Lotsennetzwerk“"
    assert summary("faq.delete", {"old": snapshot(OLD), "new": None}) == created
    learnt = {"old": snapshot(OLD), "phrase": "Bot Hilfe", "unanswered": [17, 18, 21],
              "new": snapshot(OLD, alternatives=["Hilfe zum Bot", "Bot Hilfe"])}  # fmt: skip
    assert summary("faq.learn", learnt) == (
        "Alternativen: + „Bot Hilfe“; erledigte offene Fragen: 3"
    )
    known = {**learnt, "new": learnt["old"]}  # the phrasing was there already
    assert summary("faq.learn", known) == ("Formulierung: „Bot Hilfe“; erledigte offene Fragen: 3")
    # Without "fields" (older rows, learn), the fields that differ are compared.
    assert summary("faq.update", {"old": snapshot(OLD), "new": snapshot(OLD, tags=[])}) == (
        "Tags: − „bot“"
    )


def test_other_actions_show_their_details_as_label_and_value() -> None:
    imported = {"file": "wissen.yaml", "replace": False, "new": ["a", "b", "c", "d", "e"],
                "changed": ["bot-hilfe"], "removed": [],
                "old": {"bot-hilfe": snapshot(OLD)}}  # fmt: skip
    assert summary("faq.import", imported) == (
        "Datei: „wissen.yaml“; ersetzend: nein; neu: „a“, „b“, „c“, … (+2); geändert: „bot-hilfe“"
    )
    announced = {"audience": "lotsen", "recipients": 12, "important": True,
                 "send_at": "2026-12-01T07:30:00.000Z"}  # fmt: skip
    assert summary("announcement.created", announced) == (
        "Zielgruppe: „lotsen“; Empfangende: 12; wichtig: ja; Versand: 01.12.2026 08:30"
    )
    change = {"fields": ["location", "when"], "date": "2026-12-03T13:00:00Z"}
    assert summary("meetup.change", change) == "geändert: Ort, Termin; Termin: 03.12.2026 14:00"
    transfer = {"from": "it", "to": "personal", "assignee": None, "reason": "Urlaub"}
    assert summary("ticket.transfer", transfer) == "von: „it“; an: „personal“; Grund: „Urlaub“"
    erased = {
        "erased": {"core.person": 1, "faq.questions": 4},
        "kept": [{"category": "core.audit_log", "count": 2, "reason": "x", "params": {}}],
    }
    assert summary("privacy.erase", erased) == "gelöscht oder anonymisiert: 5; erhalten: 1"
    purge = {"core": {"inbox": 3, "outbox": 0}, "faq": {"unanswered_questions": 1}}
    assert summary("privacy.purge", purge) == "4 Datensätze gelöscht oder anonymisiert"
    assert summary("privacy.purge", {"faq": {"x": 1}}) == "1 Datensatz gelöscht oder anonymisiert"


@pytest.mark.parametrize("details", [None, {}, {"reason": None}])
def test_nothing_to_say_is_an_empty_summary(details: Any) -> None:
    assert summary("announcement.confirmed", details) == ""


def test_unknown_keys_text_details_and_length() -> None:
    assert summary("x.y", {"zahl": 3}) == "zahl: 3"
    assert summary("x.y", "frei\n  formuliert") == "frei formuliert"
    long = {f"k{n}": "Wort " * 20 for n in range(10)}
    assert len(summary("x.y", long)) <= SUMMARY_LIMIT + 2


def test_english() -> None:
    new = snapshot(OLD, category="Workplace")
    text = summary("faq.update", {"old": snapshot(OLD), "new": new, "fields": ["category"]},
                   lang="en")  # fmt: skip
    assert text == "Category: “Lotsennetzwerk” → “Workplace”"
