"""Shared German text analysis: normalisation, stemming, compounds, synonyms, typo repair.

Public API (stable, used by the FAQ engine and ticket routing)::

    normalize(text) -> str              # "Passwort ändern!" -> "passwort andern"
    tokenize(text) -> list[str]         # normalised tokens, hyphenated words kept whole
    stem(token) -> str                  # Snowball German stem, feminine forms folded
    derived_stem(token) -> str | None   # verb stem of an -ung/-ation noun ("anderung" -> "and")
    has_words(text) -> bool             # a visible letter or digit: "👍👍", "???" have none
    STOPWORDS                           # normalised stopwords
    Analyzer(synonyms=..., vocabulary=..., thesaurus=...)
        .terms(text, query=False) -> list[str]
        .weighted_terms(text, query=False) -> dict[str, float]
        .units(text, query=False) -> list[Unit]
    Vocabulary, CompoundSplitter, SynonymSet, MythesThesaurus, find_mythes_de
"""

from lotsenbot.nlp.analyzer import Analyzer, Unit
from lotsenbot.nlp.compounds import CompoundSplitter
from lotsenbot.nlp.stopwords import STOPWORDS
from lotsenbot.nlp.synonyms import CONCEPT_PREFIX, SynonymError, SynonymSet
from lotsenbot.nlp.text import (
    degender,
    derived_stem,
    has_words,
    is_stopword,
    normalize,
    stem,
    tokenize,
)
from lotsenbot.nlp.thesaurus import MythesThesaurus, find_mythes_de
from lotsenbot.nlp.vocabulary import Vocabulary

__all__ = [
    "CONCEPT_PREFIX",
    "STOPWORDS",
    "Analyzer",
    "CompoundSplitter",
    "MythesThesaurus",
    "SynonymError",
    "SynonymSet",
    "Unit",
    "Vocabulary",
    "degender",
    "derived_stem",
    "find_mythes_de",
    "has_words",
    "is_stopword",
    "normalize",
    "stem",
    "tokenize",
]
