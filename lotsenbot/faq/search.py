"""German FAQ retrieval: find the entry a colloquial question means, or say there is none.

Why it is built this way
------------------------
Plain BM25 over whitespace tokens finds about half of the questions staff really type (see
``bench/faq_eval.py``). The misses are not a ranking problem but a vocabulary problem: "pw",
"Kennwortänderung", "von zu Hause arbeiten", "druker", "Lotsin" share no token with the entry
that answers them. The gap is closed with knowledge, not with tuning on test questions:

* **Morphology** (``lotsenbot.nlp``): folding of case, umlauts and ß; Snowball stems; feminine
  forms; action nouns mapped onto their verb ("Änderung" → "ändern"); compounds split against
  the knowledge base's own vocabulary (the reasons are in
  ``lotsenbot.nlp.compounds``).
* **Synonyms**: a curated domain list (``faq/data/synonyms_de.yaml``) that coordinators extend,
  and optionally OpenThesaurus (Debian's ``mythes-de``) as a last resort for unknown words.
* **Typo repair**: unknown query words are corrected (Damerau-Levenshtein, 1 edit up to six
  letters, 2 edits from seven) to words the knowledge base uses, at a reduced weight.
* **The knowledge in entries**: a question is matched against the question, the alternative
  phrasings, the tags, the category and the answer text. Field weights (question and
  alternatives 1.0, tags 0.8, category and answer 0.4) reflect how deliberately the words were
  chosen: an answer mentions many things it is not about.

Scoring, calibrated to 0..1
---------------------------
Each query word ("unit") gets an importance, its inverse document frequency; a word the
knowledge base does not know at all keeps a (reduced) importance, because a question about
something we have no entry for must not look like a match for the words we do have ("Passwort
für Amazon vergessen"). Per entry:

* ``coverage`` = share of the query's importance the entry matches, each word counted with the
  best weight of any of its alternatives in any field (so a synonym counts 0.9, an answer-only
  mention 0.4). This is what the score mostly means: *how much of what was asked does this
  entry talk about*.
* ``specificity`` = share of the entry's best-matching question (or alternative) that the query
  covers, so that "VPN Passwort" prefers "Welches Passwort brauche ich für das VPN?" over a
  long entry that merely mentions both.

``score = coverage × (1 − w + w × specificity)`` with ``w = specificity_weight``. Both factors
are fractions, so the score is in 0..1 and comparable across queries and knowledge-base sizes,
which is what makes fixed thresholds meaningful. Decisions:

* ``answer``: the best score reaches ``answer_threshold`` (``short_answer_threshold`` for a
  question of fewer than ``short_query_words`` content words), leads the runner-up by at least
  ``margin`` (two equally good entries are a close call even when both score high), *and* no
  more than ``max_unknown_share`` of the query's importance lies in words the knowledge base
  does not know at all (if a third of a question is not understood, "Passwort für Amazon
  vergessen", the bot suggests instead of answering);
* the question exactly as written for one entry (its question or an alternative, after
  normalisation) is an ``answer`` with that entry whatever the margin: coordinators write
  phrasings for exactly this, and neighbours with the same words would otherwise tie;
* ``suggest``: the best score reaches ``suggest_threshold``; the caller shows ``results``;
* ``none``: otherwise; ``results`` then holds the weak candidates for logging only.

The default thresholds were chosen on the tuning splits of ``tests/data/faq_eval`` only
(``dev``, and ``tune``, written blind from the knowledge base). Questions that describe a
situation in everyday words score lower than questions in the entries' own words. Between 0.4
and 0.5, ``tune`` had 25 right first-ranked entries against one wrong one and no out-of-scope
question (``dev``: 12 against one wrong, one out of scope), so ``answer_threshold`` is 0.4 (it
was 0.5 when only ``dev`` existed). A review then found that questions of one or two words
("Urlaub beantragen", "E-Mail zurückholen") were answered from a single matching word at that
score, so those keep 0.5 (``short_answer_threshold``; ``dev`` answers four fewer correctly,
``tune`` none fewer). Where a score between the thresholds is not an answer, it is a suggestion.

Phrase re-ranking
-----------------
Content units are a bag of words, so close neighbours that share their topic word ("Kennwort
nicht mehr" / "Kennwort ändern" / "Kennwort für das VPN") can tie. The leading
``phrase_depth`` candidates are therefore re-ordered by the adjacent word pairs they share with
the query in their question and alternatives, function words included ("nicht mehr", "krank
bin"), each word with its synonym concepts ("externe Teilnehmer" meets "externe Gäste"). A pair
counts by its IDF *among those candidates*: a pair all of them use decides nothing. The boost is
at most ``phrase_weight`` of the content score. It only reorders: the reported scores stay the
calibrated content scores (capped so that they stay descending), and the margin rule compares
the leader with the best content score of the others, so a leader that only phrasing put first
is a close call (suggest), and answer and ``none`` decisions are not made more confident by it.

Incremental updates
-------------------
Postings are compact NumPy arrays per term (entry slots as ``int32``, weights as ``float32``):
at 10,000 entries there are about 450,000 postings, and as Python dictionaries of ints and
floats they cost over 45 MB where the arrays need under 4 MB (``bench/startup.py``).
:meth:`FaqIndex.upsert` and :meth:`FaqIndex.remove` touch only the arrays of one entry's terms
(a copy of each, a few microseconds) and the vocabulary counts; nothing is rebuilt. Entries
already indexed keep the compound splits they got when they were added (a later entry can make
a new split possible); :meth:`FaqIndex.build` analyses everything against the complete
vocabulary. Removed entries leave their slot to the next entry; no result depends on slots
(entries tied at the candidate cut-off are taken by id, as the final ranking breaks ties).
"""

from __future__ import annotations

import gc
import math
import re
from array import array
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

import numpy as np

from lotsenbot.faq.kb import FaqEntry
from lotsenbot.faq.synonyms import default_synonyms
from lotsenbot.nlp import Analyzer, SynonymSet, Vocabulary, normalize
from lotsenbot.nlp.thesaurus import MythesThesaurus

__all__ = ["Decision", "FaqIndex", "FieldWeights", "SearchResult"]

Decision = Literal["answer", "suggest", "none"]

_PLACEHOLDER = re.compile(r"<[A-Z0-9_-]+>")
_SHARED_FIELDS = frozenset(("tags", "category"))  # texts many entries repeat verbatim
_PAIR_CACHE = 4096  # entries whose word pairs are kept for phrase re-ranking
_MARKUP = re.compile(r"https?://\S+|`[^`]*`|[*_#>\[\]()|]")


@dataclass(frozen=True, slots=True)
class FieldWeights:
    """How much a match in each field of an entry counts (0..1)."""

    question: float = 1.0
    alternatives: float = 1.0
    tags: float = 0.8
    category: float = 0.4
    answer: float = 0.4


@dataclass(frozen=True, slots=True)
class SearchResult:
    """Outcome of one search: what to do, and the ranked ``(entry_id, score)`` pairs."""

    decision: Decision
    results: list[tuple[str, float]] = field(default_factory=list)

    @property
    def best(self) -> tuple[str, float] | None:
        """The top-ranked entry and its score, if any."""
        return self.results[0] if self.results else None


class _Postings:
    """One term's postings: the slots of the entries that use it and their match weights."""

    __slots__ = ("slots", "values")

    def __init__(self, slots: np.ndarray, values: np.ndarray) -> None:
        self.slots = slots
        self.values = values

    def __len__(self) -> int:
        return int(self.slots.size)

    def add(self, slot: int, value: float) -> None:
        self.slots = np.append(self.slots, np.int32(slot))
        self.values = np.append(self.values, np.float32(value))

    def discard(self, slot: int) -> None:
        keep = self.slots != slot
        self.slots, self.values = self.slots[keep], self.values[keep]


@dataclass(frozen=True, slots=True)
class _Ranking:
    """What :meth:`FaqIndex._rank` found for one query."""

    ranked: list[tuple[str, float]]
    unknown_share: float  # share of the query's importance nothing in the index knows
    # The best content score of any entry but the first, for the margin rule (after phrase
    # re-ranking it need not be the entry in second place).
    runner_up: float
    words: int  # content words of the query (compound parts count once)


@dataclass(slots=True)
class _Doc:
    entry: FaqEntry
    terms: tuple[str, ...]
    # For each question/alternative: (primary stem, all terms that express it) per unit.
    questions: list[list[tuple[str, tuple[str, ...]]]]


class FaqIndex:
    """In-memory retrieval index over FAQ entries (see the module docstring)."""

    def __init__(
        self,
        *,
        synonyms: SynonymSet | None = None,
        thesaurus: MythesThesaurus | None = None,
        answer_threshold: float = 0.4,
        short_answer_threshold: float = 0.5,
        short_query_words: int = 3,
        suggest_threshold: float = 0.4,
        margin: float = 0.1,
        unknown_word_weight: float = 1.0,
        specificity_weight: float = 0.5,
        field_weights: FieldWeights | None = None,
        max_unknown_share: float = 0.35,
        candidates: int = 20,
        phrase_weight: float = 0.5,
        phrase_depth: int = 10,
    ) -> None:
        self.answer_threshold = answer_threshold
        self.short_answer_threshold = short_answer_threshold
        self.short_query_words = short_query_words
        self.suggest_threshold = suggest_threshold
        self.margin = margin
        self.unknown_word_weight = unknown_word_weight
        self.specificity_weight = specificity_weight
        self.max_unknown_share = max_unknown_share
        self.field_weights = field_weights or FieldWeights()
        self._candidates = candidates
        self.phrase_weight = phrase_weight
        self.phrase_depth = phrase_depth
        self.synonyms = synonyms if synonyms is not None else default_synonyms()
        self.vocabulary = Vocabulary()
        self.vocabulary.add_lexicon(self.synonyms.words())
        self.analyzer = Analyzer(
            synonyms=self.synonyms, vocabulary=self.vocabulary, thesaurus=thesaurus
        )
        self._docs: list[_Doc | None] = []
        self._slots: dict[str, int] = {}
        self._free: list[int] = []
        self._postings: dict[str, _Postings] = {}
        self._pair_cache: dict[str, frozenset[tuple[str, str]]] = {}

    # -- maintenance -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._slots

    def entry(self, entry_id: str) -> FaqEntry | None:
        """The indexed entry with this id, if any."""
        slot = self._slots.get(entry_id)
        doc = self._docs[slot] if slot is not None else None
        return doc.entry if doc is not None else None

    def build(self, entries: Iterable[FaqEntry]) -> None:
        """Replace the whole index. All vocabulary is counted before any entry is analysed,
        so compound splitting sees every word of the knowledge base.

        The cyclic garbage collector is paused meanwhile: the build creates hundreds of
        thousands of small containers and no reference cycles, and the collector's passes
        over them cost a tenth to a fifth of the build time at 10,000 entries
        (``bench/faq_engine.py``). Reference counting still frees everything as usual."""
        with _collector_paused():
            self._build(list(entries))

    def _build(self, entries: list[FaqEntry]) -> None:
        self._docs, self._slots, self._free = [], {}, []
        self._postings = {}
        self._pair_cache = {}
        self.vocabulary = Vocabulary()
        self.vocabulary.add_lexicon(self.synonyms.words())
        self.analyzer = Analyzer(
            synonyms=self.synonyms, vocabulary=self.vocabulary, thesaurus=self.analyzer.thesaurus
        )
        latest: dict[str, FaqEntry] = {entry.id: entry for entry in entries}
        shared: dict[tuple[str, str], list[str]] = {}
        fields = {entry_id: self._fields(entry, shared) for entry_id, entry in latest.items()}
        self.vocabulary.add(
            token
            for entry_fields in fields.values()
            for _, tokens in entry_fields
            for token in tokens
        )
        # Postings are gathered in flat typed arrays and turned into one NumPy pair per term at
        # the end: appending to NumPy arrays entry by entry would copy them every time.
        pending: dict[str, tuple[array[int], array[float]]] = {}
        contributions: dict[tuple[str, ...], list[tuple[str, float]]] = {}
        for entry_id, entry in latest.items():
            slot, bag = self._insert(entry, fields.pop(entry_id), contributions)
            for term, value in bag.items():
                slots, values = pending.get(term) or pending.setdefault(
                    term, (array("i"), array("f"))
                )
                slots.append(slot)
                values.append(value)
        self._postings = {
            term: _Postings(np.array(slots, dtype=np.int32), np.array(values, dtype=np.float32))
            for term, (slots, values) in pending.items()
        }

    def upsert(self, entry: FaqEntry) -> None:
        """Add an entry or replace the one with the same id, without a rebuild."""
        self.remove(entry.id)
        fields = self._fields(entry)
        self.vocabulary.add(token for _, tokens in fields for token in tokens)
        slot, bag = self._insert(entry, fields)
        for term, value in bag.items():
            postings = self._postings.get(term)
            if postings is None:
                self._postings[term] = _Postings(
                    np.array([slot], dtype=np.int32), np.array([value], dtype=np.float32)
                )
            else:
                postings.add(slot, value)

    def remove(self, entry_id: str) -> bool:
        """Drop an entry; returns whether it was indexed."""
        self._pair_cache.pop(entry_id, None)
        slot = self._slots.pop(entry_id, None)
        if slot is None:
            return False
        doc = self._docs[slot]
        assert doc is not None
        for term in doc.terms:
            postings = self._postings[term]
            postings.discard(slot)
            if not len(postings):
                del self._postings[term]
        # Tokenising does not depend on the vocabulary, so the tokens come out as when added.
        self.vocabulary.remove(token for _, tokens in self._fields(doc.entry) for token in tokens)
        self._docs[slot] = None
        self._free.append(slot)
        return True

    def _fields(
        self, entry: FaqEntry, shared: dict[tuple[str, str], list[str]] | None = None
    ) -> list[tuple[str, list[str]]]:
        """``(field, content tokens)`` for every text of an entry, tokenised once.

        ``shared`` (during :meth:`build`) keeps the tokens of categories and tags, which
        many entries repeat word for word."""
        texts = [("question", entry.question)]
        texts += [("alternatives", text) for text in entry.alternatives]
        texts += [("tags", tag) for tag in entry.tags]
        texts += [("category", entry.category), ("answer", _plain(entry.answer))]
        fields: list[tuple[str, list[str]]] = []
        for name, text in texts:
            if shared is None or name not in _SHARED_FIELDS:
                fields.append((name, self.analyzer.content_tokens(text)))
                continue
            tokens = shared.get((name, text))
            if tokens is None:
                tokens = shared[(name, text)] = self.analyzer.content_tokens(text)
            fields.append((name, tokens))
        return fields

    def _insert(
        self,
        entry: FaqEntry,
        fields: list[tuple[str, list[str]]],
        shared: dict[tuple[str, ...], list[tuple[str, float]]] | None = None,
    ) -> tuple[int, dict[str, float]]:
        """Store the entry in a slot; returns the slot and its terms with their weights, for
        the caller to add to the postings.

        ``shared`` (during :meth:`build`, while the vocabulary stays the same) keeps the
        weighted terms of categories and tags, which many entries repeat."""
        weights = self.field_weights
        bag: dict[str, float] = {}
        questions: list[list[tuple[str, tuple[str, ...]]]] = []
        for name, tokens in fields:
            weight = getattr(weights, name)
            cache = shared if shared is not None and name in _SHARED_FIELDS else None
            key = (name, *tokens)
            contribution = cache.get(key) if cache is not None else None
            if contribution is None:
                units = self.analyzer.units_from_tokens(tokens)
                contribution = [
                    (term, weight * term_weight)
                    for unit in units
                    for term, term_weight in unit.alternatives.items()
                ]
                if name in ("question", "alternatives") and units:
                    questions.append([(unit.primary, tuple(unit.alternatives)) for unit in units])
                if cache is not None:
                    cache[key] = contribution
            for term, value in contribution:
                if value > bag.get(term, 0.0):
                    bag[term] = value

        slot = self._free.pop() if self._free else len(self._docs)
        doc = _Doc(entry, tuple(bag), questions)
        if slot == len(self._docs):
            self._docs.append(doc)
        else:
            self._docs[slot] = doc
        self._slots[entry.id] = slot
        return slot, bag

    # -- search ----------------------------------------------------------------------------

    def search(self, query: str, limit: int = 3) -> SearchResult:
        """Rank entries for ``query`` and decide between answer, suggest and none."""
        ranking = self._rank(query, max(limit, 3))
        ranked = ranking.ranked
        if not ranked:
            return SearchResult("none", [])
        exact = self._exact_match(query, ranked)
        if exact is not None:
            # The question exactly as a coordinator wrote it for this entry: no close call,
            # even where a neighbour uses the same words ("Wer ist meine Lotsin oder mein
            # Lotse?" / "Was macht eine Lotsin oder ein Lotse?").
            first = ranked[exact]
            rest = ranked[:exact] + ranked[exact + 1 :]
            return SearchResult("answer", [(first[0], ranked[0][1]), *rest][:limit])
        best = ranked[0][1]
        threshold = (
            self.answer_threshold
            if ranking.words >= self.short_query_words
            else max(self.answer_threshold, self.short_answer_threshold)
        )
        decision: Decision
        if (
            best >= threshold
            and best - ranking.runner_up >= self.margin
            and ranking.unknown_share <= self.max_unknown_share
        ):
            decision = "answer"
        elif best >= self.suggest_threshold:
            decision = "suggest"
        else:
            decision = "none"
        return SearchResult(decision, ranked[:limit])

    def _exact_match(self, query: str, ranked: list[tuple[str, float]]) -> int | None:
        """Position in ``ranked`` of the one entry whose question or an alternative is the
        query itself (after normalisation); None when there is none, or several (two entries
        with the same phrasing are a close call after all)."""
        wanted = normalize(query)
        if not wanted:
            return None
        found = [
            position
            for position, (entry_id, _) in enumerate(ranked)
            if (entry := self.entry(entry_id)) is not None
            and any(normalize(text) == wanted for text in (entry.question, *entry.alternatives))
        ]
        return found[0] if len(found) == 1 else None

    def rank(self, query: str, limit: int = 10) -> list[tuple[str, float]]:
        """The ``limit`` best entries with their calibrated scores, best first."""
        return self._rank(query, limit).ranked

    def _rank(self, query: str, limit: int) -> _Ranking:
        """Ranked entries with what the decision needs besides their scores (see
        :class:`_Ranking`)."""
        live = len(self._slots)
        if live == 0:
            return _Ranking([], 0.0, 0.0, 0)
        units = self.analyzer.units(query, query=True)
        if not units:
            return _Ranking([], 0.0, 0.0, 0)
        words = len({unit.position for unit in units})
        coverage = np.zeros(len(self._docs))
        total_importance = unknown_importance = 0.0
        query_terms: dict[str, float] = {}
        for unit in units:
            for term, weight in unit.alternatives.items():
                if weight > query_terms.get(term, 0.0):
                    query_terms[term] = weight
            known = [(t, w) for t, w in unit.alternatives.items() if t in self._postings]
            if not known:
                unknown = self._idf(1, live) * self.unknown_word_weight
                total_importance += unknown
                unknown_importance += unknown
                continue
            anchor = unit.primary if unit.primary in self._postings else max(known, key=_w)[0]
            importance = self._idf(len(self._postings[anchor]), live)
            strength = np.zeros(len(self._docs))
            for term, weight in known:
                postings = self._postings[term]
                # float64 on both sides: ufunc.at is about 20 times slower on mixed types.
                np.maximum.at(strength, postings.slots, postings.values * np.float64(weight))
            coverage += importance * strength
            total_importance += importance
        if total_importance <= 0:
            return _Ranking([], 0.0, 0.0, words)
        unknown_share = unknown_importance / total_importance
        coverage /= total_importance
        count = min(self._candidates, int(np.count_nonzero(coverage)))
        if count == 0:
            return _Ranking([], unknown_share, 0.0, words)
        scored: list[tuple[float, str, float]] = []
        w = self.specificity_weight
        for slot in self._leading(coverage, count):
            doc = self._docs[slot]
            if doc is None:
                continue
            specificity = self._specificity(doc, query_terms, live)
            score = float(coverage[slot]) * (1.0 - w + w * specificity)
            scored.append((score, doc.entry.id, score))
        scored.sort(key=lambda item: (-item[0], item[1]))
        if self.phrase_weight > 0:
            scored = self._rerank_by_phrases(query, scored)
        # Where phrasing reordered the list, an entry may now stand above one with a higher
        # content score; it is shown with no more than the entry above it, so that scores
        # stay descending and the margin to the runner-up shrinks (a close call, not an answer).
        ranked: list[tuple[str, float]] = []
        ceiling = 1.0
        for _, entry_id, content in scored[:limit]:
            ceiling = min(ceiling, content)
            ranked.append((entry_id, round(ceiling, 4)))
        rest = [content for _, _, content in scored[1:]]
        runner_up = round(min(max(rest), ranked[0][1]), 4) if rest else 0.0
        return _Ranking(ranked, unknown_share, runner_up, words)

    def _leading(self, coverage: np.ndarray, count: int) -> list[int]:
        """The slots of the ``count`` best-covered entries. Entries tied at the cut-off are
        taken by entry id, as the final ranking breaks ties, so the result does not depend on
        which slot an entry happens to occupy (slots are reused after removals)."""
        top = np.argpartition(-coverage, count - 1)[:count]
        cutoff = coverage[top].min()
        above = np.flatnonzero(coverage > cutoff)
        tied = np.flatnonzero(coverage == cutoff)
        if above.size + tied.size == count:
            return top.tolist()
        ids = sorted(tied.tolist(), key=self._entry_id)
        return above.tolist() + ids[: count - above.size]

    def _entry_id(self, slot: int) -> str:
        doc = self._docs[slot]
        return doc.entry.id if doc is not None else ""

    def _rerank_by_phrases(
        self, query: str, scored: list[tuple[float, str, float]]
    ) -> list[tuple[float, str, float]]:
        """Raise the leading candidates that share the query's word pairs, then re-sort.

        Content units are a bag: "Kennwort nicht mehr" and "Kennwort ändern" both reduce to
        "Passwort" and tie. The pairs of adjacent words (function words included, each word
        with its synonym concepts) separate such close neighbours. A pair counts by how rare
        it is *among the leading candidates* (an IDF over them): "ich habe" or "mein
        Passwort", shared by several of them, decides nothing; "nicht mehr" or "externe
        Gäste", found in one, does. The sort key (not the reported score) grows by at most
        ``phrase_weight`` of the content score, so an entry the content words do not support
        is not pulled up by phrasing alone.
        Candidates are re-analysed here rather than stored as pairs at build time, which
        keeps the index small; only ``phrase_depth`` entries per query are touched.
        """
        words = self.analyzer.word_terms(query)
        query_pairs = [[(a, b) for a in first for b in second] for first, second in pairwise(words)]
        head = scored[: self.phrase_depth]
        if not query_pairs or len(head) < 2:
            return scored
        entry_pairs = [self._pairs(entry_id) for _, entry_id, _ in head]
        # For each query pair, which of the leading candidates use it.
        present = [
            [any(pair in pairs for pair in alternatives) for pairs in entry_pairs]
            for alternatives in query_pairs
        ]
        n = len(head)
        rarity = [self._idf(sum(row), n) for row in present]
        total = sum(rarity)
        reranked = []
        for position, (score, entry_id, content) in enumerate(head):
            shared = sum(r for r, row in zip(rarity, present, strict=True) if row[position]) / total
            reranked.append((score * (1.0 + self.phrase_weight * shared), entry_id, content))
        reranked.sort(key=lambda item: (-item[0], item[1]))
        return reranked + scored[self.phrase_depth :]

    def _pairs(self, entry_id: str) -> frozenset[tuple[str, str]]:
        """Adjacent word pairs of an entry's question and alternative phrasings.

        Cached for the entries that keep coming up as candidates; the cache is bounded
        (``_PAIR_CACHE`` entries) instead of holding pairs for a whole large knowledge base.
        """
        cached = self._pair_cache.get(entry_id)
        if cached is not None:
            return cached
        entry = self.entry(entry_id)
        if entry is None:
            return frozenset()
        pairs: set[tuple[str, str]] = set()
        for text in (entry.question, *entry.alternatives):
            words = self.analyzer.word_terms(text)
            for first, second in pairwise(words):
                pairs.update((a, b) for a in first for b in second)
        if len(self._pair_cache) >= _PAIR_CACHE:
            self._pair_cache.clear()
        result = self._pair_cache[entry_id] = frozenset(pairs)
        return result

    def _specificity(self, doc: _Doc, query_terms: dict[str, float], live: int) -> float:
        best = 0.0
        for question in doc.questions:
            total = matched = 0.0
            for primary, alternatives in question:
                importance = self._idf(len(self._postings.get(primary, ())) or 1, live)
                total += importance
                matched += importance * max(query_terms.get(a, 0.0) for a in alternatives)
            if total > 0:
                best = max(best, matched / total)
        return best

    @staticmethod
    def _idf(df: int, n: int) -> float:
        """BM25's smoothed inverse document frequency (always positive)."""
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector, and resume it afterwards if it was running (a
    build in another thread may have paused it already; it then resumes it)."""
    running = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if running:
            gc.enable()


def _w(item: tuple[str, float]) -> float:
    return item[1]


def _plain(markdown: str) -> str:
    """Answer text without placeholders, links and markup, which are not what it is about."""
    return _MARKUP.sub(" ", _PLACEHOLDER.sub(" ", markdown))
