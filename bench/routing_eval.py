"""Routing evaluation: how often does a request reach the right department?

Reads the coordinator-style department config and the labelled requests in
``tests/data/routing_eval`` and reports, per split:

* ``correct``: share of requests routed to the expected department,
* ``triage``: share sent to coordinators instead (never counted as correct),
* ``wrong``: share routed to another department,

overall and for the requests marked ambiguous. Tune on ``dev`` only; ``heldout``
is the figure to report. Usage::

    python bench/routing_eval.py [--split dev|heldout|all] [--show-errors]

Writes ``bench/results/routing_eval.json``.

History of held-out runs (kept here so nobody mistakes a retuned figure for a
first look): the first configuration, tuned on the original 56 dev requests,
reached correct 0.732 / triage 0.089 / wrong 0.179 on held-out. The dev file was
then extended by 33 new requests (marked "second batch") and the weights retuned
on dev only; held-out became 0.696 / 0.107 / 0.196. Both miss the issue's
targets (>= 0.85 correct, <= 0.10 triage): ten keywords and two sentences per
department are too little text for word matching alone.

Third held-out run: the router now gets FAQ hints (departments of the closest
entries of the shipped starter knowledge base, via
``lotsenbot.tickets.hints.department_hints``), hints below a calibrated score
count nothing and never route alone, and topics weigh less per word. Before
that, dev was extended by 44 new requests ("third batch", written before
looking at how the router handles them; 133 in all) and everything was tuned on
dev only (dev 0.850 / 0.030 / 0.120 with hints, 0.835 / 0.030 / 0.135
without). Held-out: 0.768 / 0.054 / 0.179. Triage meets the target, correct
still misses it. Use ``--no-hints`` to see the text-only router.

Fourth held-out run: structural changes for the two kinds of dev errors left
(a single generic topic word pulling an everyday question away from the
requester's own department; a broad topic outweighing a line department's
configured keyword). A configured keyword or name *as written* (inflected, not
just the same stem: "drucken" is not "Drucker") counts 1.5 times and as
specific evidence; in a how-to question ("Wie/Wo ... ich/man/wir") from a known
department one topic word no longer suffices; the requester's own department's
score counts half in the competition, since its words mostly describe the
context. Before that, dev was extended by 28 new requests ("fourth batch",
written before running the router on them; 161 in all; the old router reached
0.714 on them, 0.832 on all of dev) and everything was tuned on dev only (dev
0.894 / 0.012 / 0.093 with hints, 0.876 / 0.012 / 0.112 without). Held-out:
0.857 / 0.018 / 0.125 (48 of 56 right, one triaged). Both targets are met, the
correct share by a single request.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from lotsenbot.config import DepartmentConfig
from lotsenbot.faq.kb import load_starter_kb
from lotsenbot.faq.search import FaqIndex
from lotsenbot.tickets.hints import department_hints
from lotsenbot.tickets.routing import RoutingDecision, TopicRouter

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "routing_eval"
RESULTS = ROOT / "bench" / "results" / "routing_eval.json"
SPLITS = ("dev", "heldout")


def load_departments(path: Path = DATA / "departments.toml") -> list[DepartmentConfig]:
    with path.open("rb") as handle:
        raw = tomllib.load(handle)
    return [DepartmentConfig(**entry) for entry in raw["departments"]]


def load_requests(split: str) -> list[dict[str, Any]]:
    with (DATA / f"{split}.yaml").open(encoding="utf-8") as handle:
        items: list[dict[str, Any]] = yaml.safe_load(handle)
    return items


def starter_faq_index(departments: list[DepartmentConfig]) -> FaqIndex:
    """The FAQ index a municipality starts with: the shipped starter knowledge base.

    Its department ids must be ids of the evaluated configuration; nothing is
    mapped by hand, so a mismatch fails here instead of silently giving no hints.
    """
    entries = load_starter_kb(known_departments={d.id for d in departments})
    index = FaqIndex()
    index.build(entries)
    return index


def evaluate(
    router: TopicRouter, items: list[dict[str, Any]], faq: FaqIndex | None = None
) -> dict[str, Any]:
    """Figures for one split, plus the misrouted and triaged requests for inspection.

    With ``faq`` the router gets the departments of the closest FAQ entries as
    hints, as the tickets feature passes them in production.
    """
    outcomes: Counter[str] = Counter()
    ambiguous: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    errors: list[dict[str, Any]] = []
    for item in items:
        hints = department_hints(faq, item["text"]) if faq is not None else []
        decision: RoutingDecision = router.route(
            item["text"], faq_hints=hints, requester_department=item.get("requester")
        )
        reasons[decision.reason] += 1
        if decision.decision == "triage":
            outcome = "triage"
        elif decision.department == item["expected"]:
            outcome = "correct"
        else:
            outcome = "wrong"
        outcomes[outcome] += 1
        if item.get("ambiguous"):
            ambiguous[outcome] += 1
        if outcome != "correct":
            top = sorted(decision.scores.items(), key=lambda kv: kv[1], reverse=True)[:3]
            errors.append(
                {
                    "text": item["text"],
                    "expected": item["expected"],
                    "requester": item.get("requester"),
                    "got": decision.department,
                    "reason": decision.reason,
                    "top": [[k, round(v, 2)] for k, v in top],
                    "hints": [[k, round(v, 2)] for k, v in hints[:3]],
                }
            )
    total = len(items)
    n_ambiguous = sum(ambiguous.values())

    def share(counter: Counter[str], key: str, n: int) -> float:
        return round(counter[key] / n, 4) if n else 0.0

    return {
        "n": total,
        "correct": share(outcomes, "correct", total),
        "triage": share(outcomes, "triage", total),
        "wrong": share(outcomes, "wrong", total),
        "n_ambiguous": n_ambiguous,
        "ambiguous_correct": share(ambiguous, "correct", n_ambiguous),
        "reasons": dict(reasons),
        "errors": errors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=[*SPLITS, "all"], default="all")
    parser.add_argument("--show-errors", action="store_true")
    parser.add_argument(
        "--no-hints", action="store_true", help="route on the request text alone (no FAQ hints)"
    )
    parser.add_argument("--no-write", action="store_true", help="do not write the JSON file")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    departments = load_departments()
    router = TopicRouter(departments)
    faq = None if args.no_hints else starter_faq_index(departments)
    splits = SPLITS if args.split == "all" else (args.split,)
    results: dict[str, Any] = {}
    for split in splits:
        items = load_requests(split)
        t0 = time.perf_counter()
        figures = evaluate(router, items, faq)
        figures["ms_per_request"] = round((time.perf_counter() - t0) * 1000 / len(items), 3)
        results[split] = figures
        print(
            f"{split:8s} n={figures['n']:3d}  correct={figures['correct']:.3f}  "
            f"triage={figures['triage']:.3f}  wrong={figures['wrong']:.3f}  "
            f"ambiguous n={figures['n_ambiguous']} correct={figures['ambiguous_correct']:.3f}  "
            f"({figures['ms_per_request']} ms/request)"
        )
        if args.show_errors:
            for error in figures["errors"]:
                print(
                    f"  [{error['reason']}] expected={error['expected']} got={error['got']} "
                    f"requester={error['requester']} top={error['top']} "
                    f"hints={error['hints']}\n    {error['text']}"
                )
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "benchmark": "routing_eval",
            "python": platform.python_version(),
            "seconds": round(time.perf_counter() - started, 3),
            "faq_hints": "off" if faq is None else f"starter KB ({len(faq)} entries)",
            "settings": dataclasses.asdict(router.settings),
            "splits": results,
        }
        RESULTS.write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
        print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
