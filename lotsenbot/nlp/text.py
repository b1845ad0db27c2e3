"""Normalisation, tokenisation and stemming of German text.

Why these choices:

* **Folding instead of transliteration.** ``normalize`` lower-cases with ``casefold`` (which
  also turns ß into ss) and strips diacritics, so "Ändern", "ändern" and "andern" become the
  same string. The spelling with digraphs ("aendern") is left to the Snowball stemmer, which
  maps ae/oe/ue to the umlaut before stemming (the "german2" behaviour that PyStemmer's German
  stemmer has), so all three spellings end in the same stem. Rewriting every "ue" in
  ``normalize`` would damage words such as "Queue" or "aktuell" for no gain.
* **Snowball stemming (PyStemmer).** It is fast (C), deterministic, needs no model file, and
  conflates the inflection that matters in questions ("Drucker", "Druckers", "drucken").
* **Gender-inclusive forms.** Staff write "Lotsin", "Lotsinnen", "Lots*innen",
  "Mitarbeiter:innen". The gender star, colon and underscore are removed before tokenising and
  :func:`degender` maps feminine forms onto the masculine base so that "Lotsin" and "Lotse"
  meet. It only touches well-known feminine endings and skips verbs such as "beginnen".
* **Derivation** (:func:`derived_stem`). Snowball conflates inflection, not derivation, and not
  even consistently: "Änderung" → "ander" but "ändern" → "and", "Meldung" → "meldung" but
  "melden" → "meld", "Installation" → "installation" but "installieren" → "installi". Staff ask
  with the verb ("Passwort ändern") where the entry uses the noun ("Passwortänderung") and the
  other way round. The action nouns in -ung and -ation are regular enough to map back onto their
  verb: the suffix is replaced by the infinitive ending (-en, -ieren) and the result stemmed,
  so the noun meets the verb exactly where Snowball puts the verb.
* **Hyphens stay inside a token** ("E-Akte", "Zwei-Faktor-Authentifizierung"); the analyzer
  treats the hyphen as an explicit compound boundary.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import Stemmer

from lotsenbot.nlp.stopwords import STOPWORDS

__all__ = [
    "degender",
    "derived_stem",
    "has_words",
    "is_stopword",
    "normalize",
    "split_hyphenated",
    "stem",
    "tokenize",
]

# Gender markers between a stem and "in"/"innen": Lots*innen, Lots:innen, Lots_innen, Lots·innen.
_GENDER_MARK = re.compile(r"(?<=\w)[*:_·/](?=in(?:nen)?\b)", re.IGNORECASE)
# Anything that is neither a letter, a digit, nor a hyphen joining two word characters.
_NON_WORD = re.compile(r"[^\w-]+|(?<!\w)-|-(?!\w)|_")
_DASHES = (("‐", "-"), ("‑", "-"), ("‒", "-"), ("–", " "), ("—", " "))
# Fast path for the accented letters German text actually contains; anything else goes
# through Unicode decomposition below. Pairs for ``str.replace`` rather than a table for
# ``str.translate``: on German text (mostly ASCII, a few umlauts) skipping the letters that
# do not occur is about twice as fast, which the index build of a large knowledge base feels.
_FOLD = tuple(
    (accented, plain)
    for letters, plain in (
        ("äàáâãå", "a"),
        ("öòóôõø", "o"),
        ("üùúû", "u"),
        ("éèêë", "e"),
        ("íìîï", "i"),
        ("ç", "c"),
        ("ñ", "n"),
    )
    for accented in letters
)


def _replace_all(text: str, pairs: tuple[tuple[str, str], ...]) -> str:
    """``text`` with each single character of ``pairs`` replaced (no replacement contains
    another one, so the order does not matter); ASCII text is returned as it is."""
    if text.isascii():
        return text
    for old, new in pairs:
        if old in text:
            text = text.replace(old, new)
    return text


# Verbs and nouns that end in -in/-innen without being feminine forms.
_NOT_FEMININE = frozenset(
    {
        "beginnen",
        "gewinnen",
        "spinnen",
        "besinnen",
        "sinnen",
        "rinnen",
        "entrinnen",
        "innen",
        "termin",
        "termine",
        "medizin",
        "benzin",
        "magazin",
        "kamin",
        "delfin",
        "berlin",
        "admin",
        "latein",
        "rosin",
        "vitamin",
        "disziplin",
        "routin",
        "maschin",
        "kabin",
        "cousin",
        "satin",
        "protein",
    }
)
# Feminine suffixes after which "-in"/"-innen" is stripped: Nutzerin, Lotsin, Kollegin,
# Expertin, Chefin, Beamtin, Bürgerin, Ärztin.
_FEMININE = re.compile(r"(?<=[rsgtfdk])in(?:nen)?$")

_STEMMER = Stemmer.Stemmer("german")

# Action nouns and the infinitive ending their verb takes: Änderung → ändern (via "anderen",
# which Snowball stems like "andern"), Installation → installieren. The base must keep at
# least four letters so that short nouns that are not derived from a verb ("Nation",
# "Lung…") stay alone.
_DERIVATIONS = (("ungen", "en"), ("ung", "en"), ("ationen", "ieren"), ("ation", "ieren"))
_MIN_DERIVATION_BASE = 4


def normalize(text: str) -> str:
    """Return ``text`` folded for matching: lower case, no diacritics, ß → ss, no punctuation.

    Hyphens inside words are kept ("e-akte") because they mark compound boundaries; all other
    punctuation becomes a space and runs of whitespace collapse to one space.
    """
    text = _replace_all(_GENDER_MARK.sub("", _replace_all(text, _DASHES)).casefold(), _FOLD)
    text = _NON_WORD.sub(" ", text)
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
        text = _NON_WORD.sub(" ", "".join(ch for ch in text if not unicodedata.combining(ch)))
    return " ".join(text.split())


def tokenize(text: str) -> list[str]:
    """Split ``text`` into normalised word tokens (hyphenated words stay one token)."""
    return normalize(text).split()


def is_stopword(token: str) -> bool:
    """Return whether a *normalised* token is a stopword."""
    return token in STOPWORDS


def split_hyphenated(token: str) -> list[str]:
    """Return the parts of a hyphenated token that are long enough to mean something.

    Single letters ("e" in "e-akte") are prefixes, not words, and are dropped.
    """
    return [part for part in token.split("-") if len(part) >= 2]


def degender(token: str) -> str:
    """Map a normalised feminine form onto its masculine base ("lotsinnen" → "lots")."""
    if len(token) < 6 or token in _NOT_FEMININE or "-" in token:
        return token
    base = _FEMININE.sub("", token)
    if len(base) < 4:
        return token
    # "lots" alone would lose its s in the stemmer; "lotse" is the base form it came from.
    return base + "e" if base.endswith("s") else base


@lru_cache(maxsize=65536)
def stem(token: str) -> str:
    """Snowball German stem of a normalised token, with feminine forms folded first.

    Hyphens are removed before stemming so that "e-akte" and "eakte" share one stem.
    """
    word = degender(token).replace("-", "")
    return _STEMMER.stemWord(word) if word else word


@lru_cache(maxsize=65536)
def derived_stem(token: str) -> str | None:
    """Stem of the verb a normalised action noun comes from, if it differs from its own stem.

    "anderung" → "and" (the stem of "andern"), "meldung" → "meld", "installation" →
    "installi"; ``None`` for words that are not -ung/-ation nouns or already stem like the verb
    ("einrichtung" and "einrichten" share "einricht" anyway).
    """
    if "-" in token:
        return None
    for suffix, ending in _DERIVATIONS:
        if token.endswith(suffix):
            base = token[: -len(suffix)]
            if len(base) < _MIN_DERIVATION_BASE:
                return None
            verb = _STEMMER.stemWord(base + ending)
            return verb if verb != stem(token) else None
    return None


# Letters that show nothing: the Hangul fillers. A lone U+FFA0 or U+3164 looks like an empty
# message (people send it for that), yet counts as a letter for ``str.isalnum``.
_INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")


def has_words(text: str) -> bool:
    """Whether ``text`` has something to search for or pass on: a visible letter or digit.
    Emoji, punctuation and blank characters alone ("👍👍", "???", "\u3164") have none."""
    return any(ch.isalnum() and ch not in _INVISIBLE_LETTERS for ch in text)
