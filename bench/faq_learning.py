"""Does learning unanswered questions carry over to other people's wording? Dev only.

Coordinators teach the bot with ``!faq offen`` / ``!faq lernen``: a question it recorded as
unanswered becomes, word for word, an alternative phrasing of the entry it meant. This
simulates that on the ``dev`` split of ``tests/data/faq_eval`` without touching held-out:
dev is split in two halves per entry (questions of every entry on both sides), the questions
of one half that the bot records as unanswered are learned, and the other half is evaluated
with and without them; both ways round, for several seeds.

A question counts as recorded when the decision is ``none``, or ``suggest`` without the
right entry among the suggestions (the asker turns them down with ``0``). Wrong answers and
suggestions that contain the right entry are not recorded by the bot, so not learned.

Usage::

    .venv/bin/python bench/faq_learning.py [--seeds 5]

Prints the figures; writes nothing.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from faq_eval import evaluate_engine, load_kb, load_queries

from lotsenbot.core.router import fold
from lotsenbot.faq.kb import FaqEntry
from lotsenbot.faq.search import FaqIndex


def learned(
    index: FaqIndex, entries: list[FaqEntry], queries: list[dict[str, Any]]
) -> tuple[list[FaqEntry], int]:
    """The entries after learning every recorded question of ``queries``, and how many."""
    phrases: dict[str, list[str]] = {}
    for item in queries:
        if not item["id"]:
            continue
        result = index.search(item["q"], limit=3)
        shown = [entry_id for entry_id, _ in result.results]
        if result.decision == "none" or (result.decision == "suggest" and item["id"] not in shown):
            phrases.setdefault(item["id"], []).append(item["q"])
    result_entries, count = [], 0
    for entry in entries:
        known = {fold(text) for text in (entry.question, *entry.alternatives)}
        added = [p for p in phrases.get(entry.id, []) if fold(p) not in known]
        count += len(added)
        if added:
            entry = FaqEntry.model_validate(
                {**entry.model_dump(), "alternatives": [*entry.alternatives, *added]}
            )
        result_entries.append(entry)
    return result_entries, count


def halves(queries: list[dict[str, Any]], seed: int) -> tuple[list[Any], list[Any]]:
    """Each entry's questions (and the out-of-scope ones) split about evenly at random."""
    rng = random.Random(seed)
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for item in queries:
        groups.setdefault(item["id"], []).append(item)
    first: list[dict[str, Any]] = []
    second: list[dict[str, Any]] = []
    for items in groups.values():
        items = items[:]
        rng.shuffle(items)
        cut = len(items) // 2 + (len(items) % 2 and rng.random() < 0.5)
        first += items[:cut]
        second += items[cut:]
    return first, second


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    entries = load_kb()
    dev = load_queries("dev")
    base = FaqIndex()
    base.build(entries)
    totals = {name: dict.fromkeys(("in", "top1", "answer", "oos", "none"), 0) for name in
              ("without", "with")}  # fmt: skip
    phrases = 0
    for seed in range(args.seeds):
        first, second = halves(dev, seed)
        for teach, test in ((first, second), (second, first)):
            entries_learned, count = learned(base, entries, teach)
            phrases += count
            index = FaqIndex()
            index.build(entries_learned)
            for name, engine in (("without", base), ("with", index)):
                figures = evaluate_engine(engine, test)
                n, m = figures["in_scope"], figures["out_of_scope"]
                total = totals[name]
                total["in"] += n
                total["top1"] += round(figures["top1"] * n)
                total["answer"] += round(figures["answer_correct"] * n)
                total["oos"] += m
                total["none"] += round((figures["oos_none"] or 0) * m)
    runs = 2 * args.seeds
    print(f"dev, {args.seeds} seeds x 2 halves; {phrases / runs:.1f} questions learned per half")
    print(f"{'learned':8} {'top1':>6} {'ans_ok':>7} {'oos_none':>8}")
    for name, total in totals.items():
        print(
            f"{name:8} {total['top1'] / total['in']:6.3f} {total['answer'] / total['in']:7.3f}"
            f" {total['none'] / total['oos']:8.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
