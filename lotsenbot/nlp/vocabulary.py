"""Counts of the words a collection actually uses, shared by compound splitting and typo repair.

Both features must only ever produce words the collection knows: a compound is split into
parts that occur on their own somewhere, and a misspelt word is corrected only to a word that
occurs. The vocabulary therefore counts standalone content tokens (their stems and their
surface forms) and can be updated one document at a time, so that an index can add or remove a
single entry without rebuilding. ``version`` changes with every update so that callers can drop
caches that depend on the counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from lotsenbot.nlp.text import stem

__all__ = ["Vocabulary"]


class Vocabulary:
    """Stem and surface-form counts of a document collection plus an optional lexicon."""

    def __init__(self) -> None:
        self._stems: Counter[str] = Counter()
        self._surface: Counter[str] = Counter()
        self._lexicon_stems: set[str] = set()
        self._lexicon_surface: set[str] = set()
        self.version = 0
        self._choices: list[str] | None = None

    def add(self, tokens: Iterable[str]) -> None:
        """Count normalised content tokens of one document."""
        for token in tokens:
            self._surface[token] += 1
            self._stems[stem(token)] += 1
        self._changed()

    def remove(self, tokens: Iterable[str]) -> None:
        """Undo :meth:`add` for the same tokens (used when an entry changes or goes away)."""
        for token in tokens:
            key = stem(token)
            self._surface[token] -= 1
            if self._surface[token] <= 0:
                del self._surface[token]
            self._stems[key] -= 1
            if self._stems[key] <= 0:
                del self._stems[key]
        self._changed()

    def add_lexicon(self, tokens: Iterable[str]) -> None:
        """Register words known from curated lists (synonyms) that documents may not contain.

        Lexicon words count once: enough for a compound part or a typo to resolve to them,
        never enough to outweigh words the documents really use.
        """
        for token in tokens:
            self._lexicon_surface.add(token)
            self._lexicon_stems.add(stem(token))
        self._changed()

    def stem_count(self, stem_: str) -> int:
        """How often a stem occurs in the documents (1 for a lexicon-only stem, else 0)."""
        count = self._stems.get(stem_, 0)
        if count == 0 and stem_ in self._lexicon_stems:
            return 1
        return count

    def knows_surface(self, token: str) -> bool:
        """Whether this exact normalised token occurs in the documents or the lexicon."""
        return token in self._surface or token in self._lexicon_surface

    def surface_count(self, token: str) -> int:
        """How often this exact normalised token occurs in the documents."""
        return self._surface.get(token, 0)

    def choices(self) -> list[str]:
        """All known surface forms, sorted for deterministic typo repair (cached per version)."""
        if self._choices is None:
            self._choices = sorted(set(self._surface) | self._lexicon_surface)
        return self._choices

    def _changed(self) -> None:
        self.version += 1
        self._choices = None
