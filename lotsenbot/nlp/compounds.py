"""Dictionary-driven German compound splitting against the vocabulary of the collection.

Why not a general-purpose splitter: ``charsplit-fst`` and ``compound-split`` (PyPI) score
split points with n-gram statistics from newspaper and web text. They split well in general
language, but they know nothing about "E-Akte", "BundID", "Funktionspostfach" or "VPN", they
happily split words the collection uses whole, and they would add a dependency (one with a
Rust extension, the other unmaintained since 2020) for something that only needs to answer
one question here: *does this word consist of words this knowledge base uses?* A part the
knowledge base never uses cannot help retrieval anyway.

So the splitter follows Koehn & Knight (2003, "Empirical Methods for Compound Splitting"):
enumerate splits into up to three parts of at least three letters, allowing the German linking
elements (Fugenelemente: -s-, -es-, -n-, -en-, -e-, -er-) after a part; every part must be
known to the vocabulary (by stem, so inflected parts count); the split wins only if the
geometric mean of the part counts beats the count of the whole word. A frequent word such as
"Passwort" therefore stays whole, while "Passwortänderung" becomes "passwort" + "anderung".
One unknown *first* part is allowed when the whole word is unknown, no split into known parts
exists, and the rest is known: "Farblaserdrucker" still yields "drucker". The unknown part is
then as short as possible, so the known rest as long as possible: "Systemausfall" is "system" +
"ausfall", not "systemaus" + "fall", however common "Fall" is. Function words (stopwords) lead
a compound at most, as a prefix ("Ausdruck"); in the middle or at the end they are never a part
("Rathaus" is not "rath" + "aus").
"""

from __future__ import annotations

import math

from lotsenbot.nlp.stopwords import STOPWORDS
from lotsenbot.nlp.text import stem
from lotsenbot.nlp.vocabulary import Vocabulary

__all__ = ["CompoundSplitter"]

_LINKS = ("", "s", "es", "n", "en", "e", "er", "ns")
_UNKNOWN_COUNT = 0.5
_CACHE_LIMIT = 50_000


class CompoundSplitter:
    """Split normalised words into parts known to a :class:`Vocabulary`."""

    def __init__(self, vocabulary: Vocabulary, *, min_part: int = 3, max_parts: int = 3) -> None:
        self._vocab = vocabulary
        self._min = min_part
        self._max_parts = max_parts
        self._cache: dict[str, list[str]] = {}
        self._cache_version = -1

    def split(self, word: str) -> list[str]:
        """Return the parts of ``word``, or ``[word]`` when it is better left whole."""
        if self._cache_version != self._vocab.version:
            self._cache.clear()
            self._cache_version = self._vocab.version
        cached = self._cache.get(word)
        if cached is None:
            cached = self._split(word)
            if len(self._cache) > _CACHE_LIMIT:  # staff's words are endless; memory is not
                self._cache.clear()
            self._cache[word] = cached
        return cached

    def _count(self, part: str, *, strip_link: bool) -> tuple[float, str]:
        """Best count of ``part`` and the form that produced it (linking element removed)."""
        best = (0.0, part)
        for link in _LINKS if strip_link else ("",):
            if link and not part.endswith(link):
                continue
            base = part[: len(part) - len(link)] if link else part
            if len(base) < self._min:
                continue
            count = self._vocab.stem_count(stem(base))
            if count > best[0]:
                best = (float(count), base)
        return best

    def _split(self, word: str) -> list[str]:
        if len(word) < 2 * self._min or not word.isalpha():
            return [word]
        whole = float(self._vocab.stem_count(stem(word)))
        best = self._best(word, parts_left=self._max_parts, first=True)
        if best is None and whole == 0:
            best = self._with_unknown_modifier(word)
        if best is None:
            return [word]
        score, parts = best
        return parts if score > whole else [word]

    def _with_unknown_modifier(self, word: str) -> tuple[float, list[str]] | None:
        """Only when no split into known parts exists: an unknown modifier in front of the
        longest known rest ("Farblaserdrucker" → "farblaser" + "drucker"; "Systemausfall" →
        "system" + "ausfall", not "systemaus" + "fall", however common "Fall" is)."""
        for cut in range(4, len(word) - self._min + 1):
            head, rest = word[:cut], word[cut:]
            if head in STOPWORDS or rest in STOPWORDS:
                continue
            rest_count, _ = self._count(rest, strip_link=False)
            if rest_count > 0:
                return _mean([_UNKNOWN_COUNT, rest_count]), [head, rest]
            sub = self._best(rest, parts_left=self._max_parts - 1, first=False)
            if sub is not None:
                sub_score, sub_parts = sub
                return _mean([_UNKNOWN_COUNT, *[sub_score] * len(sub_parts)]), [head, *sub_parts]
        return None

    def _best(self, word: str, *, parts_left: int, first: bool) -> tuple[float, list[str]] | None:
        """Highest geometric-mean split of ``word`` into 2..parts_left parts."""
        if parts_left < 2:
            return None
        best: tuple[float, list[str]] | None = None
        for cut in range(self._min, len(word) - self._min + 1):
            head, rest = word[:cut], word[cut:]
            head_count, head_form = self._count(head, strip_link=True)
            if not first and head_form in STOPWORDS:
                continue  # a function word only ever leads a compound, as a prefix ("aus-")
            if head_count == 0:
                continue
            options: list[tuple[list[float], list[str]]] = []
            # The last part is the compound's head, a noun or verb: never a function word
            # ("Rathaus" is not "rath" + "aus"; "Ausdruck" may still be "aus" + "druck").
            rest_count = 0.0 if rest in STOPWORDS else self._count(rest, strip_link=False)[0]
            if rest_count > 0:
                options.append(([rest_count], [rest]))
            sub = self._best(rest, parts_left=parts_left - 1, first=False)
            if sub is not None:
                sub_score, sub_parts = sub
                options.append(([sub_score] * len(sub_parts), sub_parts))
            for counts, parts in options:
                candidate = (_mean([head_count, *counts]), [head_form, *parts])
                if best is None or _better(candidate, best):
                    best = candidate
        return best


def _mean(counts: list[float]) -> float:
    """Geometric mean of the parts' counts (Koehn & Knight)."""
    return math.exp(sum(math.log(c) for c in counts) / len(counts))


def _better(a: tuple[float, list[str]], b: tuple[float, list[str]]) -> bool:
    """Prefer the higher score, then fewer parts, then a longer first part (determinism)."""
    if a[0] != b[0]:
        return a[0] > b[0]
    if len(a[1]) != len(b[1]):
        return len(a[1]) < len(b[1])
    return len(a[1][0]) > len(b[1][0])
