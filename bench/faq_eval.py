"""Retrieval quality of the FAQ engine against a plain BM25 baseline, on the same split.

Usage (from the repository root)::

    .venv/bin/python bench/faq_eval.py [--split dev|tune|tuning|heldout|fresh|both|all]
        [--thesaurus DIR] [--show-misses] [--show-errors] [--no-write]

Data: ``tests/data/faq_eval/`` (knowledge base ``kb.yaml``, queries ``dev.yaml``,
``tune.yaml``, ``heldout.yaml`` and ``fresh.yaml``). Thresholds and synonyms are tuned on the
tuning splits only: ``dev`` and ``tune`` (a blind set written like ``fresh``; ``tuning`` runs
both). ``heldout`` and ``fresh`` are the figures to report; ``--show-misses`` and
``--show-errors`` refuse them (see the folder's README). ``both`` is dev and held-out, ``all``
every split. Writes ``bench/results/faq_eval.json``.

How results are counted (in-scope questions):

* ``answer_correct``: decision ``answer`` and the answered entry is the right one — what the
  user experiences as "the bot knew it";
* ``top1``: the right entry is ranked first, whatever the decision;
* ``useful``: ``answer_correct`` or decision ``suggest`` with the right entry among the shown
  suggestions;
* ``top3``: the right entry is among the first three ranked;
* ``wrong_answer``: decision ``answer`` with a wrong entry (the costly error).

Out-of-scope questions: ``none`` rate, ``suggest`` rate and ``answer`` (wrong) rate.

The baseline is bm25s over lower-cased whitespace tokens of all entry fields, with no abstain
rule of its own; for a fair ``none`` rate it gets the raw-score threshold that maximises
correct decisions on ``dev``, applied unchanged to ``heldout``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lotsenbot.faq.kb import FaqEntry, parse_yaml  # noqa: E402
from lotsenbot.faq.search import FaqIndex  # noqa: E402
from lotsenbot.nlp import Analyzer, stem  # noqa: E402
from lotsenbot.nlp.thesaurus import find_mythes_de  # noqa: E402

DATA = ROOT / "tests" / "data" / "faq_eval"
RESULTS = ROOT / "bench" / "results" / "faq_eval.json"
TUNING = ("dev", "tune")  # the splits whose individual errors may be read


def load_kb() -> list[FaqEntry]:
    """The evaluation knowledge base (validated like any import)."""
    result = parse_yaml((DATA / "kb.yaml").read_text("utf-8"))
    if not result.ok:
        raise SystemExit(f"kb.yaml does not validate: {result.errors}")
    return result.entries


def load_queries(split: str) -> list[dict[str, Any]]:
    """``[{"q": text, "id": entry id or None}]`` of one split."""
    return yaml.safe_load((DATA / f"{split}.yaml").read_text("utf-8"))


def no_shared_word(query: str, entry: FaqEntry, *, whole_entry: bool) -> bool:
    """True when the query shares no content-word stem with the entry's wording."""
    analyzer = Analyzer()
    texts = [entry.question, *entry.alternatives]
    if whole_entry:
        texts += [*entry.tags, entry.category, entry.answer]
    entry_stems = {stem(t) for text in texts for t in analyzer.content_tokens(text)}
    query_stems = {stem(t) for t in analyzer.content_tokens(query)}
    return not (query_stems & entry_stems)


def evaluate_engine(index: FaqIndex, queries: list[dict[str, Any]]) -> dict[str, Any]:
    """Quality figures of the engine on one split, plus the misses for inspection."""
    inscope = [q for q in queries if q["id"]]
    oos = [q for q in queries if not q["id"]]
    counts = dict.fromkeys(("answer_correct", "top1", "top3", "useful", "wrong_answer"), 0)
    decisions_in = dict.fromkeys(("answer", "suggest", "none"), 0)
    decisions_out = dict.fromkeys(("answer", "suggest", "none"), 0)
    misses: list[dict[str, Any]] = []
    latencies: list[float] = []
    for item in inscope:
        start = time.perf_counter()
        result = index.search(item["q"], limit=3)
        latencies.append(time.perf_counter() - start)
        ids = [entry_id for entry_id, _ in result.results]
        decisions_in[result.decision] += 1
        top1 = bool(ids) and ids[0] == item["id"]
        counts["top1"] += top1
        counts["top3"] += item["id"] in ids[:3]
        counts["answer_correct"] += result.decision == "answer" and top1
        counts["wrong_answer"] += result.decision == "answer" and not top1
        counts["useful"] += (result.decision == "answer" and top1) or (
            result.decision == "suggest" and item["id"] in ids
        )
        if not (result.decision == "answer" and top1):
            misses.append(
                {
                    "q": item["q"],
                    "want": item["id"],
                    "decision": result.decision,
                    "got": ids[:3],
                    "scores": [s for _, s in result.results],
                }
            )
    for item in oos:
        start = time.perf_counter()
        result = index.search(item["q"], limit=3)
        latencies.append(time.perf_counter() - start)
        decisions_out[result.decision] += 1
        if result.decision != "none":
            misses.append(
                {
                    "q": item["q"],
                    "want": None,
                    "decision": result.decision,
                    "got": [e for e, _ in result.results],
                    "scores": [s for _, s in result.results],
                }
            )
    n_in, n_out = len(inscope), len(oos)
    latencies.sort()
    return {
        "in_scope": n_in,
        "out_of_scope": n_out,
        **{key: round(value / n_in, 4) for key, value in counts.items()},
        "decisions_in_scope": decisions_in,
        "oos_none": round(decisions_out["none"] / n_out, 4) if n_out else None,
        "oos_suggest": round(decisions_out["suggest"] / n_out, 4) if n_out else None,
        "oos_answer": round(decisions_out["answer"] / n_out, 4) if n_out else None,
        "latency_ms_p50": round(latencies[len(latencies) // 2] * 1000, 3),
        "misses": misses,
    }


class Bm25Baseline:
    """bm25s over lower-cased whitespace tokens of every field of an entry."""

    def __init__(self, entries: list[FaqEntry]) -> None:
        import bm25s

        self._ids = [entry.id for entry in entries]
        corpus = [
            " ".join([e.question, *e.alternatives, *e.tags, e.category, e.answer]).lower().split()
            for e in entries
        ]
        self._model = bm25s.BM25()
        self._model.index(corpus, show_progress=False)
        self.threshold = 0.0

    def rank(self, query: str, k: int = 3) -> list[tuple[str, float]]:
        tokens = query.lower().split()
        scores = self._model.get_scores(tokens)
        order = sorted(range(len(scores)), key=lambda i: -scores[i])[:k]
        return [(self._ids[i], float(scores[i])) for i in order if scores[i] > 0]

    def tune_threshold(self, queries: list[dict[str, Any]]) -> None:
        """Raw-score abstain threshold maximising correct decisions on these (dev) queries."""
        tops = [(self.rank(q["q"], 1), q["id"]) for q in queries]
        candidates = sorted({r[0][1] for r, _ in tops if r} | {0.0})
        best = (-1, 0.0)
        for threshold in candidates:
            correct = sum(
                (bool(r) and r[0][1] >= threshold and r[0][0] == want)
                or (want is None and (not r or r[0][1] < threshold))
                for r, want in tops
            )
            best = max(best, (correct, threshold))
        self.threshold = best[1]

    def evaluate(self, queries: list[dict[str, Any]]) -> dict[str, Any]:
        inscope = [q for q in queries if q["id"]]
        oos = [q for q in queries if not q["id"]]
        top1 = top3 = answer_correct = none = 0
        for item in inscope:
            ranked = self.rank(item["q"])
            ids = [i for i, _ in ranked]
            top1 += bool(ids) and ids[0] == item["id"]
            top3 += item["id"] in ids
            answer_correct += bool(ids) and ids[0] == item["id"] and ranked[0][1] >= self.threshold
        for item in oos:
            ranked = self.rank(item["q"], 1)
            none += not ranked or ranked[0][1] < self.threshold
        return {
            "in_scope": len(inscope),
            "out_of_scope": len(oos),
            "top1": round(top1 / len(inscope), 4),
            "top3": round(top3 / len(inscope), 4),
            "answer_correct": round(answer_correct / len(inscope), 4),
            "oos_none": round(none / len(oos), 4) if oos else None,
            "abstain_threshold": round(self.threshold, 4),
        }


def ranking_errors(index: FaqIndex, queries: list[dict[str, Any]], depth: int = 5) -> list[str]:
    """One line per in-scope question whose right entry is not ranked first: what outranked
    it and where the right entry ended up, to see which neighbours the ranking confuses."""
    lines = []
    for item in queries:
        if not item["id"]:
            continue
        ranked = index.rank(item["q"], limit=max(depth, 20))
        ids = [entry_id for entry_id, _ in ranked]
        if ids and ids[0] == item["id"]:
            continue
        position = ids.index(item["id"]) + 1 if item["id"] in ids else None
        shown = ", ".join(f"{entry_id} {score:.3f}" for entry_id, score in ranked[:depth])
        lines.append(f"  ERR {item['q']!r} want {item['id']} at {position}: {shown}")
    return lines


def overlap_stats(entries: list[FaqEntry], queries: list[dict[str, Any]]) -> dict[str, Any]:
    """How many in-scope questions share no content word with their entry."""
    by_id = {e.id: e for e in entries}
    inscope = [q for q in queries if q["id"]]
    none_q = sum(no_shared_word(q["q"], by_id[q["id"]], whole_entry=False) for q in inscope)
    none_all = sum(no_shared_word(q["q"], by_id[q["id"]], whole_entry=True) for q in inscope)
    return {
        "no_shared_word_with_question_or_alternatives": round(none_q / len(inscope), 4),
        "no_shared_word_with_any_field": round(none_all / len(inscope), 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--split",
        choices=("dev", "tune", "tuning", "heldout", "fresh", "both", "all"),
        default="both",
    )
    parser.add_argument("--thesaurus", type=Path, help="folder with mythes-de files")
    parser.add_argument(
        "--show-misses", action="store_true", help="print the dev questions missed (dev only)"
    )
    parser.add_argument(
        "--show-errors",
        action="store_true",
        help="print the dev questions whose right entry is not ranked first (dev only)",
    )
    parser.add_argument("--no-write", action="store_true", help="do not write the JSON file")
    args = parser.parse_args()
    if (args.show_errors or args.show_misses) and args.split not in (*TUNING, "tuning"):
        # Looking at individual held-out errors would turn held-out into dev.
        parser.error("--show-errors and --show-misses work on the tuning splits only")

    entries = load_kb()
    thesaurus = find_mythes_de(args.thesaurus) if args.thesaurus else None
    index = FaqIndex(thesaurus=thesaurus)
    index.build(entries)
    dev = load_queries("dev")
    baseline = Bm25Baseline(entries)
    baseline.tune_threshold(dev)

    groups = {
        "both": ["dev", "heldout"],
        "tuning": list(TUNING),
        "all": ["dev", "tune", "heldout", "fresh"],
    }
    splits = groups.get(args.split, [args.split])
    report: dict[str, Any] = {
        "knowledge_base_entries": len(entries),
        "thesaurus": thesaurus is not None,
        "thresholds": {
            "answer": index.answer_threshold,
            "suggest": index.suggest_threshold,
            "margin": index.margin,
        },
        "splits": {},
    }
    rows = []
    for split in splits:
        queries = dev if split == "dev" else load_queries(split)
        engine = evaluate_engine(index, queries)
        misses = engine.pop("misses")
        bm25 = baseline.evaluate(queries)
        report["splits"][split] = {
            "engine": engine,
            "bm25": bm25,
            "query_overlap": overlap_stats(entries, queries),
        }
        if args.show_misses:
            report["splits"][split]["engine_misses"] = misses
            for miss in misses:
                print(f"  MISS [{split}] {miss}")
        if args.show_errors:
            for line in ranking_errors(index, queries):
                print(line)
        rows.append((split, engine, bm25))

    print(
        f"{'split':8} {'system':6} {'n_in':>5} {'n_oos':>5} {'ans_ok':>7} {'top1':>6} "
        f"{'top3':>6} {'useful':>7} {'wrong':>6} {'oos_none':>8}"
    )
    for split, engine, bm25 in rows:
        print(
            f"{split:8} {'engine':6} {engine['in_scope']:5d} {engine['out_of_scope']:5d} "
            f"{engine['answer_correct']:7.3f} {engine['top1']:6.3f} {engine['top3']:6.3f} "
            f"{engine['useful']:7.3f} {engine['wrong_answer']:6.3f} {engine['oos_none']:8.3f}"
        )
        print(
            f"{split:8} {'bm25':6} {bm25['in_scope']:5d} {bm25['out_of_scope']:5d} "
            f"{bm25['answer_correct']:7.3f} {bm25['top1']:6.3f} {bm25['top3']:6.3f} "
            f"{'-':>7} {'-':>6} {bm25['oos_none']:8.3f}"
        )
    for split in splits:
        print(f"{split}: query overlap {report['splits'][split]['query_overlap']}")
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
        print(f"written: {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
