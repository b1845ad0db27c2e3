"""Speed and memory of the FAQ engine on synthetic knowledge bases of 100, 1,000 and 10,000 entries.

Usage (from the repository root)::

    .venv/bin/python bench/faq_engine.py [--sizes 100 1000 10000] [--seed 7]

Not a timed test: run it by hand or in CI's benchmark step. Each size runs in a fresh Python
process so that memory figures do not include the previous size. Per size it reports:

* ``build_s``: :meth:`FaqIndex.build` wall time;
* ``query_ms_p50`` / ``query_ms_p99``: per-question latency of :meth:`FaqIndex.search` over all
  evaluation questions (dev + heldout, in- and out-of-scope), in process;
* ``upsert_ms_mean`` / ``upsert_ms_max``: replacing an existing entry, and adding a new one,
  incrementally (no rebuild), each followed by a search so lazy work is counted;
* ``remove_ms_mean``;
* ``rss_mb`` (VmRSS after building and querying) and ``peak_rss_mb`` (VmHWM), read from
  ``/proc/self/status`` (Linux).

Targets from the issue: p50 ≤ 2 ms, p99 ≤ 10 ms, build ≤ 3 s, RSS ≤ 200 MB.

Synthetic entries are variations of the evaluation knowledge base, generated with a fixed seed:
each copy gets a department-specific place ("im Standesamt"), an invented product name, a
reordered set of alternatives and a few answer sentences from other entries, so the vocabulary
and the postings grow like a real, larger knowledge base instead of repeating 57 texts.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lotsenbot.faq.kb import FaqEntry  # noqa: E402
from lotsenbot.faq.search import FaqIndex  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from faq_eval import load_kb, load_queries  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "faq_engine.json"

_PLACES = [
    "im Bürgeramt",
    "im Standesamt",
    "im Jugendamt",
    "im Bauamt",
    "in der Kämmerei",
    "im Ordnungsamt",
    "in der Stadtbibliothek",
    "im Sozialamt",
    "in der Feuerwehr",
    "im Gesundheitsamt",
    "in der Ausländerbehörde",
    "im Schulamt",
    "im Umweltamt",
    "in der Stadtkasse",
    "im Personalamt",
    "im Rechnungsprüfungsamt",
]
_SYLLABLES = ["ka", "lo", "mer", "sta", "vin", "tro", "pel", "dar", "qui", "sen", "ul", "bex"]


def _pseudo_word(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))


def synthetic_kb(size: int, seed: int) -> list[FaqEntry]:
    """``size`` entries derived deterministically from the evaluation knowledge base."""
    base = load_kb()
    rng = random.Random(seed)
    sentences = [s.strip() for e in base for s in e.answer.split(".") if len(s.strip()) > 20]
    entries: list[FaqEntry] = []
    for number in range(size):
        original = base[number % len(base)]
        if number < len(base):
            entries.append(original)
            continue
        place = rng.choice(_PLACES)
        product = _pseudo_word(rng).capitalize()
        alternatives = list(original.alternatives)
        rng.shuffle(alternatives)
        alternatives.append(f"{original.question.rstrip('?.')} mit {product}")
        extra = ". ".join(rng.sample(sentences, 2))
        entries.append(
            original.model_copy(
                update={
                    "id": f"{original.id}-{number}",
                    "question": f"{original.question.rstrip('?.')} {place}?",
                    "alternatives": alternatives,
                    "answer": f"{original.answer}\n{extra}. Gilt für {product} {place}.",
                    "tags": [*original.tags, product.lower()],
                }
            )
        )
    return entries


def _memory() -> dict[str, float]:
    values: dict[str, float] = {}
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = round(int(rest.split()[0]) / 1024, 1)
    return {"rss_mb": values.get("VmRSS", 0.0), "peak_rss_mb": values.get("VmHWM", 0.0)}


def measure(size: int, seed: int) -> dict[str, Any]:
    """All figures for one knowledge-base size (run in its own process)."""
    entries = synthetic_kb(size, seed)
    queries = [q["q"] for split in ("dev", "heldout") for q in load_queries(split)]
    index = FaqIndex()
    start = time.perf_counter()
    index.build(entries)
    build_s = time.perf_counter() - start

    for query in queries[:20]:  # warm caches the way a running bot has them
        index.search(query)
    latencies = []
    for query in queries:
        start = time.perf_counter()
        index.search(query)
        latencies.append((time.perf_counter() - start) * 1000)
    latencies.sort()

    rng = random.Random(seed + 1)
    upserts = []
    for number in range(50):
        changed = rng.choice(entries)
        updated = changed.model_copy(update={"answer": changed.answer + f" Stand {number}."})
        fresh = changed.model_copy(update={"id": f"neu-{number}"})
        for entry in (updated, fresh):
            start = time.perf_counter()
            index.upsert(entry)
            index.search(rng.choice(queries))
            upserts.append((time.perf_counter() - start) * 1000)
    removes = []
    for number in range(50):
        start = time.perf_counter()
        index.remove(f"neu-{number}")
        removes.append((time.perf_counter() - start) * 1000)

    return {
        "entries": size,
        "queries": len(queries),
        "build_s": round(build_s, 3),
        "query_ms_p50": round(latencies[len(latencies) // 2], 3),
        "query_ms_p99": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 3),
        "query_ms_max": round(latencies[-1], 3),
        "upsert_ms_mean": round(sum(upserts) / len(upserts), 3),
        "upsert_ms_max": round(max(upserts), 3),
        "remove_ms_mean": round(sum(removes) / len(removes), 3),
        **_memory(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, args.seed)))
        return 0

    rows = []
    for size in args.sizes:
        output = subprocess.run(
            [sys.executable, __file__, "--one", str(size), "--seed", str(args.seed)],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        ).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
    header = (
        "entries",
        "build_s",
        "query_ms_p50",
        "query_ms_p99",
        "upsert_ms_mean",
        "remove_ms_mean",
        "rss_mb",
        "peak_rss_mb",
    )
    print(" ".join(f"{h:>14}" for h in header))
    for row in rows:
        print(" ".join(f"{row[h]:>14}" for h in header))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "targets": {"query_ms_p50": 2, "query_ms_p99": 10, "build_s": 3, "rss_mb": 200},
        "seed": args.seed,
        "python": sys.version.split()[0],
        "results": rows,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    print(f"written: {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
