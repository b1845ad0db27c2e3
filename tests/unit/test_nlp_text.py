"""Normalisation, tokenisation, stemming and stopwords of lotsenbot.nlp."""

from __future__ import annotations

import pytest

from lotsenbot.nlp import STOPWORDS, degender, derived_stem, has_words, normalize, stem, tokenize


def test_normalize_folds_case_umlauts_sharp_s_and_punctuation() -> None:
    assert normalize("Passwort ÄNDERN?!") == "passwort andern"
    assert normalize("Straße, Größe; Übung.") == "strasse grosse ubung"
    assert normalize("  „Zitat“ – (Klammer)  ") == "zitat klammer"


def test_normalize_keeps_inner_hyphens_and_drops_loose_ones() -> None:
    assert normalize("E-Akte - bitte -jetzt-") == "e-akte bitte jetzt"
    assert tokenize("Zwei-Faktor-Authentifizierung einrichten") == [
        "zwei-faktor-authentifizierung",
        "einrichten",
    ]


def test_normalize_folds_every_accented_letter_and_dash_it_knows() -> None:
    """The fast path (replacing only letters that occur) and Unicode decomposition agree."""
    assert normalize("ÄàÁâãå Öòóôõø Üùúû Éèêë Íìîï Çç Ññ") == ("aaaaaa oooooo uuuu eeee iiii cc nn")
    assert normalize("e‐Akte e‑Akte a‒b Seite–Ende Satz—Ende") == (
        "e-akte e-akte a-b seite ende satz ende"
    )
    assert normalize("Crème brûlée, ẞ, Ŝ") == "creme brulee ss s"


def test_normalize_removes_gender_markers() -> None:
    assert normalize("Lots*innen, Mitarbeiter:innen und Kolleg_innen") == (
        "lotsinnen mitarbeiterinnen und kolleginnen"
    )


@pytest.mark.parametrize("spelling", ["ändern", "aendern", "andern", "Ändern"])
def test_umlaut_spellings_share_one_stem(spelling: str) -> None:
    assert stem(normalize(spelling)) == stem("andern")


def test_inflections_share_stems() -> None:
    assert stem("drucker") == stem("druckern") == stem("drucken")
    assert stem("passworter") == stem("passwort")


@pytest.mark.parametrize(
    ("feminine", "masculine"),
    [
        ("lotsin", "lotse"),
        ("lotsinnen", "lotsen"),
        ("mitarbeiterin", "mitarbeiter"),
        ("kollegin", "kollege"),
        ("burgerinnen", "burger"),
    ],
)
def test_feminine_forms_meet_masculine_forms(feminine: str, masculine: str) -> None:
    assert stem(feminine) == stem(masculine)


@pytest.mark.parametrize("word", ["termin", "beginnen", "medizin", "admin"])
def test_words_ending_in_in_are_not_degendered(word: str) -> None:
    assert degender(word) == word


def test_stopwords_are_normalised_and_keep_meaningful_words_out() -> None:
    assert {"ich", "wie", "bitte", "hallo", "fur", "uber"} <= STOPWORDS
    assert all(word == normalize(word) for word in STOPWORDS)
    assert not {"neu", "zweit", "werde", "online", "drucker"} & STOPWORDS


@pytest.mark.parametrize(
    ("noun", "verb"),
    [
        ("Änderung", "ändern"),
        ("Änderungen", "ändern"),
        ("Meldung", "melden"),
        ("Prüfung", "prüfen"),
        ("Nutzung", "nutzen"),
        ("Installation", "installieren"),
        ("Informationen", "informieren"),
    ],
)
def test_action_nouns_meet_their_verb(noun: str, verb: str) -> None:
    # Snowball stems these pairs apart; the derived stem is where it puts the verb.
    token = normalize(noun)
    assert stem(token) != stem(normalize(verb))
    assert derived_stem(token) == stem(normalize(verb))


@pytest.mark.parametrize(
    "word", ["einrichtung", "station", "nation", "lösung", "e-mail-änderung", "drucker"]
)
def test_no_derived_stem_where_it_adds_nothing_or_is_not_a_derivation(word: str) -> None:
    # "einrichtung" already stems like "einrichten"; "station"/"nation"/"lösung" have bases
    # too short to be a verb worth trusting; hyphenated words are split before this runs.
    assert derived_stem(normalize(word)) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Drucker?", True),
        ("12", True),
        ("Ä", True),
        ("👍👍👍", False),
        ("???", False),
        ("🙂 🙂 !", False),
        ("\uffa0", False),  # halfwidth Hangul filler: a letter for str.isalnum, shows nothing
        ("\u3164 \u115f\u1160", False),
        ("\u2800", False),  # braille blank
        ("", False),
    ],
)
def test_has_words(text: str, expected: bool) -> None:
    assert has_words(text) is expected
