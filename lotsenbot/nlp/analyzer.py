"""The analysis pipeline: text → weighted *units* → index terms.

A **unit** is one meaningful word of the text (or one part of a compound). It carries its own
stem plus *alternatives*: other terms that count as a match for it, each with a weight ≤ 1.

=====================  ===========  ====================================================
alternative            weight       why
=====================  ===========  ====================================================
own stem               1.0          the word as written
whole compound stem    1.0          a part of "Passwortänderung" still matches a document
                                    that uses the compound unsplit
verb of an action      0.9          "Änderung" → stem of "ändern" (Snowball stems the two
noun                                differently); below the exact word because the noun
                                    and the verb are not always used alike
synonym concept        0.9          "Kennwort" ↔ "Passwort"; slightly below the exact word
typo repair (1 edit)   0.65         "druker" → "drucker", only for words the vocabulary
typo repair (2 edits)  0.5          does not know (1 edit from five letters, 2 from nine),
                                    and only to words it
                                    knows; well below synonyms because a real word the
                                    knowledge base lacks ("Wetter" → "weiter") looks exactly
                                    like a typo, so a lone repaired word should lead to a
                                    suggestion rather than an answer
thesaurus synonym      0.6          OpenThesaurus, last resort for unknown query words
=====================  ===========  ====================================================

Documents and queries go through the same steps, so whatever a document is turned into, a
query can meet it there. Typo repair and the thesaurus apply to queries only (``query=True``):
a knowledge base is written carefully and should not be "corrected" towards itself.

Ticket routing and any other feature reuse this class for department or keyword matching;
:meth:`Analyzer.terms` gives the flat list of terms for a bag-of-words comparison.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from rapidfuzz import process
from rapidfuzz.distance import DamerauLevenshtein, Indel

from lotsenbot.nlp.compounds import CompoundSplitter
from lotsenbot.nlp.synonyms import SynonymSet
from lotsenbot.nlp.text import derived_stem, is_stopword, split_hyphenated, stem, tokenize
from lotsenbot.nlp.thesaurus import MythesThesaurus
from lotsenbot.nlp.vocabulary import Vocabulary

__all__ = ["Analyzer", "Unit"]

WEIGHT_COMPOUND = 1.0
WEIGHT_SYNONYM = 0.9
WEIGHT_DERIVED = 0.9
WEIGHT_TYPO = (1.0, 0.65, 0.5)  # by edit distance
WEIGHT_THESAURUS = 0.6
_MIN_THESAURUS_WORD = 4
MAX_QUERY_WORDS = 64


@dataclass(slots=True)
class Unit:
    """One content word (or compound part) with the terms that match it."""

    surface: str
    primary: str
    alternatives: dict[str, float] = field(default_factory=dict)
    position: int = 0

    def add(self, term: str, weight: float) -> None:
        """Record an alternative, keeping the highest weight seen for it."""
        if weight > self.alternatives.get(term, 0.0):
            self.alternatives[term] = weight


class Analyzer:
    """Turns German text into units and terms (see the module docstring).

    ``vocabulary`` enables compound splitting and, for queries, typo repair; without it the
    analyzer still normalises, stems and applies synonyms, which is what a caller matching
    a handful of keywords (e.g. department names) needs.
    """

    def __init__(
        self,
        *,
        synonyms: SynonymSet | None = None,
        vocabulary: Vocabulary | None = None,
        thesaurus: MythesThesaurus | None = None,
        min_typo_length: int = 5,
    ) -> None:
        self.synonyms = synonyms or SynonymSet()
        self.vocabulary = vocabulary
        self.thesaurus = thesaurus
        self._splitter = CompoundSplitter(vocabulary) if vocabulary is not None else None
        self._min_typo = min_typo_length
        self._typo_cache: dict[str, tuple[str, int] | None] = {}
        self._typo_version = -1
        self._token_cache: dict[str, list[tuple[str, str, dict[str, float]]]] = {}
        self._token_version = -1

    def content_tokens(self, text: str) -> list[str]:
        """Normalised tokens of ``text`` without stopwords and bare numbers.

        Interned: building an index holds the token lists of every entry at once, and equal
        words then share one string (about 20 MB less at 10,000 entries)."""
        return [sys.intern(t) for t in tokenize(text) if not is_stopword(t) and not t.isdigit()]

    def word_terms(self, text: str) -> list[frozenset[str]]:
        """Every word of ``text`` in order, function words included, as its stem plus the
        synonym concepts of that stem.

        Content units drop function words on purpose, yet word *pairs* with them still say
        something: "Passwort nicht mehr" (forgotten) against "Passwort ändern". Callers compare
        adjacent pairs of these sets (see ``FaqIndex``); no compound splitting or typo repair,
        because a pair only counts when it is written alike.
        """
        result: list[frozenset[str]] = []
        for token in tokenize(text):
            token_stem = stem(token)
            concepts = self.synonyms.concepts_for_stem(token_stem)
            result.append(
                frozenset((token_stem, *concepts)) if concepts else frozenset((token_stem,))
            )
        return result

    def units(self, text: str, *, query: bool = False) -> list[Unit]:
        """Analyse ``text`` into units with their alternatives."""
        return self.units_from_tokens(self.content_tokens(text), query=query)

    def units_from_tokens(self, tokens: list[str], *, query: bool = False) -> list[Unit]:
        """Like :meth:`units` for text already split by :meth:`content_tokens`.

        A query is read up to :data:`MAX_QUERY_WORDS` content words: a question is short, and
        repairing the typos of a pasted page would cost seconds."""
        if query:
            tokens = tokens[:MAX_QUERY_WORDS]
        units: list[Unit] = []
        for position, token in enumerate(tokens):
            for surface, primary, alternatives in self._token_units(token):
                units.append(Unit(surface, primary, dict(alternatives), position))
        if query:
            for unit in units:
                if not self._known(unit):
                    self._repair(unit)
        self._apply_phrases(units)
        if query and self.thesaurus is not None:
            for unit in units:
                if not self._known(unit):
                    self._expand_thesaurus(unit)
        return units

    def weighted_terms(self, text: str, *, query: bool = False) -> dict[str, float]:
        """All terms of ``text`` with the highest weight any unit gives them."""
        terms: dict[str, float] = {}
        for unit in self.units(text, query=query):
            for term, weight in unit.alternatives.items():
                if weight > terms.get(term, 0.0):
                    terms[term] = weight
        return terms

    def terms(self, text: str, *, query: bool = False) -> list[str]:
        """Stems, compound parts and synonym concepts of ``text``, in order, without repeats."""
        return list(self.weighted_terms(text, query=query))

    # -- steps ------------------------------------------------------------------------------

    def _token_units(self, token: str) -> list[tuple[str, str, dict[str, float]]]:
        """Units of one token (stems, compound parts, one-word synonyms), cached.

        The cache is emptied whenever the vocabulary changes, because compound splits
        depend on it; within one build every repeated word is analysed once.
        """
        version = self.vocabulary.version if self.vocabulary is not None else 0
        if version != self._token_version:
            self._token_cache.clear()
            self._token_version = version
        cached = self._token_cache.get(token)
        if cached is not None:
            return cached
        whole = stem(token)
        parts = self._parts(token)
        result: list[tuple[str, str, dict[str, float]]] = []
        pieces = [(token, whole)] if parts == [token] else [(p, stem(p)) for p in parts]
        for surface, primary in pieces:
            alternatives = {primary: 1.0}
            if primary != whole:
                alternatives[whole] = WEIGHT_COMPOUND
            verb = derived_stem(surface)
            if verb is not None and verb not in alternatives:
                alternatives[verb] = WEIGHT_DERIVED
            for term, weight in list(alternatives.items()):
                for concept in self.synonyms.concepts_for_stem(term):
                    if WEIGHT_SYNONYM * weight > alternatives.get(concept, 0.0):
                        alternatives[concept] = WEIGHT_SYNONYM * weight
            result.append((surface, primary, alternatives))
        if len(self._token_cache) > 50_000:
            self._token_cache.clear()
        self._token_cache[token] = result
        return result

    def _parts(self, token: str) -> list[str]:
        pieces = split_hyphenated(token) if "-" in token else [token]
        if not pieces:
            return [token]
        parts: list[str] = []
        for piece in pieces:
            if self._splitter is None:
                parts.append(piece)
            else:
                parts.extend(self._splitter.split(piece))
        return parts

    def _known(self, unit: Unit) -> bool:
        if self.vocabulary is None:
            return True
        return any(
            self.vocabulary.stem_count(term) > 0 or self.synonyms.concepts_for_stem(term)
            for term in unit.alternatives
        )

    def _repair(self, unit: Unit) -> None:
        """Add the closest known word for a word the vocabulary does not know."""
        if self.vocabulary is None or len(unit.surface) < self._min_typo:
            return
        hit = self._closest(unit.surface)
        if hit is not None:
            word, distance = hit
            repaired = stem(word)
            unit.add(repaired, WEIGHT_TYPO[distance])
            for concept in self.synonyms.concepts_for_stem(repaired):
                unit.add(concept, WEIGHT_TYPO[distance] * WEIGHT_SYNONYM)

    def _closest(self, word: str) -> tuple[str, int] | None:
        assert self.vocabulary is not None
        if self._typo_version != self.vocabulary.version:
            self._typo_cache.clear()
            self._typo_version = self.vocabulary.version
        if word in self._typo_cache:
            return self._typo_cache[word]
        if len(self._typo_cache) > 50_000:  # bounded, like the token cache
            self._typo_cache.clear()
        max_distance = 1 if len(word) < 9 else 2
        matches = process.extract(
            word,
            self.vocabulary.choices(),
            scorer=DamerauLevenshtein.distance,
            score_cutoff=max_distance,
            limit=8,
        )
        best: tuple[str, int] | None = None
        best_key: tuple[int, int, int, str] | None = None
        for candidate, distance, _ in matches:
            # Closest first; among equals prefer a dropped or doubled letter over a replaced one
            # ("vergesen" is "vergessen", not "vergeben"), then the word the documents use
            # most, then alphabetical order for determinism.
            key = (
                int(distance),
                Indel.distance(word, candidate),
                -self.vocabulary.surface_count(candidate),
                candidate,
            )
            if best_key is None or key < best_key:
                best, best_key = (candidate, int(distance)), key
        self._typo_cache[word] = best
        return best

    def _apply_phrases(self, units: list[Unit]) -> None:
        stems = [unit.primary for unit in units]
        for concept, positions in self.synonyms.phrase_concepts(stems):
            for index in positions:
                units[index].add(concept, WEIGHT_SYNONYM)

    def _expand_thesaurus(self, unit: Unit) -> None:
        assert self.thesaurus is not None and self.vocabulary is not None
        for synonym in self.thesaurus.lookup(unit.surface):
            # Phrases, function words and very short words ("man", "tun", "auf") are what the
            # thesaurus's broad senses bring in; they say nothing about a topic.
            if " " in synonym or is_stopword(synonym) or len(synonym) < _MIN_THESAURUS_WORD:
                continue
            synonym_stem = stem(synonym)
            if self.vocabulary.stem_count(synonym_stem) > 0:
                unit.add(synonym_stem, WEIGHT_THESAURUS)
                for concept in self.synonyms.concepts_for_stem(synonym_stem):
                    unit.add(concept, WEIGHT_THESAURUS * WEIGHT_SYNONYM)
