"""Synonym groups ("Kennwort" = "Passwort", "von zu Hause arbeiten" = "Homeoffice").

A group is a list of words or phrases that mean the same thing in the domain. Instead of
expanding every word into all its synonyms (which makes long queries noisy), each member maps
to one *concept term* (``=passwort``), emitted next to the word's own stem on both the
document and the query side. Matching the concept then connects any two members, while the
exact wording still scores a little higher because its stem matches too.

Phrases are matched on the stems of content words, in any order, within a small window:
German word order moves verbs around ("Ich möchte von zu Hause arbeiten" / "Arbeiten von
daheim"), so an ordered n-gram match would miss most real phrasings. A stem may belong to
several groups.

Groups come from YAML files: a list whose items are either a list of terms, or a mapping with
``terms`` (and an optional ``name`` used as the concept). Coordinators extend the shipped list
by adding their own file; :meth:`SynonymSet.merged` combines sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lotsenbot.nlp.text import is_stopword, normalize, split_hyphenated, stem, tokenize

__all__ = ["CONCEPT_PREFIX", "SynonymError", "SynonymSet"]

CONCEPT_PREFIX = "="
"""Concept terms start with this character, which normalised text never contains."""


class SynonymError(ValueError):
    """A synonym file is not a list of term lists."""


@dataclass(frozen=True, slots=True)
class _Phrase:
    stems: tuple[str, ...]
    concept: str


@dataclass(slots=True)
class SynonymSet:
    """Compiled synonym groups: stem → concepts, plus multi-word phrases."""

    groups: list[tuple[str, list[str]]] = field(default_factory=list)
    _single: dict[str, set[str]] = field(default_factory=dict, init=False, repr=False)
    _phrases: dict[str, list[_Phrase]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for name, terms in self.groups:
            self._compile(name, terms)

    @classmethod
    def from_groups(cls, groups: Iterable[Sequence[str]]) -> SynonymSet:
        """Build a set from plain term lists; the first term names the concept."""
        return cls([(_concept_name(terms[0]), list(terms)) for terms in groups if terms])

    @classmethod
    def from_yaml(cls, path: Path | str) -> SynonymSet:
        """Load groups from a YAML file (see the module docstring for the format)."""
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
        return cls.from_data(data, source=str(path))

    @classmethod
    def from_data(cls, data: object, *, source: str = "<data>") -> SynonymSet:
        """Build a set from already-parsed YAML data."""
        if data is None:
            return cls()
        if not isinstance(data, list):
            raise SynonymError(f"{source}: expected a list of synonym groups")
        groups: list[tuple[str, list[str]]] = []
        for number, item in enumerate(data, start=1):
            name: str | None = None
            terms = item
            if isinstance(item, dict):
                name = item.get("name")
                terms = item.get("terms")
            if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
                raise SynonymError(f"{source}: group {number} is not a list of words")
            if not terms:
                continue
            groups.append((_concept_name(name or terms[0]), list(terms)))
        return cls(groups)

    def merged(self, other: SynonymSet) -> SynonymSet:
        """Return a set holding the groups of both (a coordinator's file on top of ours)."""
        return SynonymSet([*self.groups, *other.groups])

    def words(self) -> set[str]:
        """Every normalised word that occurs in some group (for the vocabulary lexicon)."""
        words: set[str] = set()
        for _, terms in self.groups:
            for term in terms:
                for token in tokenize(term):
                    words.add(token)
                    if "-" in token:
                        words.update(split_hyphenated(token))
        return words

    def concepts_for_stem(self, stem_: str) -> tuple[str, ...]:
        """Concepts that a single word with this stem stands for, in name order: a word in two
        groups must rank the same in every process (set order changes with the hash seed)."""
        return tuple(sorted(self._single.get(stem_, ())))

    def phrase_concepts(self, stems: Sequence[str]) -> list[tuple[str, list[int]]]:
        """Find multi-word phrases in a sequence of content stems.

        Returns ``(concept, positions)`` for every phrase whose stems all occur within a window
        of ``len(phrase) + 1`` positions, in any order.
        """
        found: list[tuple[str, list[int]]] = []
        for start, first in enumerate(stems):
            for phrase in self._phrases.get(first, ()):
                window = len(phrase.stems) + 1
                lo, hi = max(0, start - window), min(len(stems), start + window + 1)
                positions = [start]
                for needed in phrase.stems[1:]:
                    hit = next(
                        (i for i in range(lo, hi) if stems[i] == needed and i not in positions),
                        None,
                    )
                    if hit is None:
                        break
                    positions.append(hit)
                else:
                    if max(positions) - min(positions) <= window:
                        found.append((phrase.concept, sorted(positions)))
        return found

    def _compile(self, concept: str, terms: list[str]) -> None:
        variants: list[tuple[str, ...]] = []
        for term in terms:
            tokens = [t for t in tokenize(term) if not is_stopword(t)]
            variants.append(tuple(stem(t) for t in tokens))
            # "remote-zugang" is also typed as "remote zugang": register the parts as a phrase.
            if any("-" in t for t in tokens):
                parts = [p for t in tokens for p in (split_hyphenated(t) if "-" in t else [t])]
                if len(parts) > 1:
                    variants.append(tuple(stem(p) for p in parts))
        for stems in variants:
            if not stems:
                continue
            if len(stems) == 1:
                self._single.setdefault(stems[0], set()).add(concept)
            else:
                # Indexed by its rarest-looking (longest) stem; the others are searched around it.
                anchor = max(stems, key=len)
                rest = list(stems)
                rest.remove(anchor)
                self._phrases.setdefault(anchor, []).append(_Phrase((anchor, *rest), concept))


def _concept_name(term: str) -> str:
    return CONCEPT_PREFIX + normalize(term).replace(" ", "_")
