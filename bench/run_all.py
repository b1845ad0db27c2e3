"""``make bench``: every benchmark but the soak, then ``latest.json`` and ``BENCHMARKS.md``.

Each benchmark runs in its own process with its own time limit (and the whole run within
``--budget``), so one that fails or hangs is reported as such and the others still count.
Every figure is set against a baseline measured in the same run — the echo bot on the
same homeserver, bm25s on the same knowledge base, the bot with an empty database, or
Synapse's own rate limit — because absolute times on a shared machine drift.

    .venv/bin/python bench/run_all.py [--budget 1500] [--only startup reply_latency …]
    .venv/bin/python bench/run_all.py --report-only   # rewrite BENCHMARKS.md from the JSON

Everything stays on loopback: each benchmark starts and stops its own Synapse.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import RESULTS, ROOT, machine, percentile, rss_mb, scrub_paths

BENCH = ROOT / "bench"
LATEST = RESULTS / "latest.json"
FULL_DEFAULT_FANOUT = "announce_fanout_500_default_limits.json"
REPORT = ROOT / "BENCHMARKS.md"
FAQ_SIZES = (100, 1000, 10000)
FANOUT_DEFAULT_SAMPLE = 20  # recipients under Synapse's default limits (0.2 messages/s)
TRIAL_SENDER_CONCURRENCY = 32  # proposed sends in flight, tried in extra burst rounds
SYNAPSE_RC_MESSAGE = (0.2, 10)  # Synapse's default rc_message: per second, burst count


@dataclass(frozen=True)
class Step:
    name: str
    args: list[str]
    timeout: float
    result: str  # file in bench/results/


def fanout_step(name: str, *flags: str, default_recipients: int = 0) -> Step:
    """One run of ``announce_fanout.py`` to 500 recipients; writes ``<name>.json``."""
    return Step(
        name,
        [
            "announce_fanout.py",
            *flags,
            "--recipients",
            "500",
            "--default-recipients",
            str(default_recipients),
            "--budget",
            "600",
        ],
        660,
        name,
    )


STEPS = [
    Step("faq_engine", ["faq_engine.py", "--sizes", *map(str, FAQ_SIZES)], 420, "faq_engine"),
    Step("faq_bm25_speed", ["run_all.py", "--bm25-speed"], 240, "faq_bm25_speed"),
    Step("faq_eval", ["faq_eval.py", "--split", "all"], 180, "faq_eval"),
    Step("routing_eval", ["routing_eval.py"], 180, "routing_eval"),
    Step(
        "startup",
        [
            "startup.py",
            "--restarts",
            "5",
            "--profile",
        ],
        600,
        "startup",
    ),
    Step(
        "reply_latency",
        [
            "reply_latency.py",
            "--questions",
            "200",
            "--clients",
            "200",
            "--compare-sender-concurrency",
            str(TRIAL_SENDER_CONCURRENCY),
        ],
        960,
        "reply_latency",
    ),
    # The plain fan-out also samples Synapse's default limits; the encrypted ones relaxed only.
    fanout_step("announce_fanout", default_recipients=FANOUT_DEFAULT_SAMPLE),
    fanout_step("announce_fanout_encrypted", "--encrypted"),
    fanout_step("announce_fanout_devices", "--devices"),
]


# -- running -------------------------------------------------------------------------------------


def load_avg() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


RUNNING: list[subprocess.Popen[bytes]] = []  # the step now running, for stop_on_signal


def stop_on_signal(signum: int, _frame: object) -> None:
    """Interrupted (Ctrl-C, SIGTERM): take the running benchmark and what it started along,
    instead of leaving it orphaned in its own process group."""
    for process in list(RUNNING):
        stop_group(process)
    raise SystemExit(128 + signum)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the step's process group, SIGKILL if it is still there after 20 s."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_step(step: Step, timeout: float, log_dir: Path) -> dict[str, Any]:
    """Run one benchmark process; its result file must be fresh afterwards."""
    result_file = RESULTS / f"{step.result}.json"
    before = result_file.stat().st_mtime if result_file.exists() else 0.0
    log_file = log_dir / f"{step.name}.log"
    started = time.monotonic()
    status, error = "ok", None
    with log_file.open("wb") as log:
        # Its own process group: on a timeout the benchmark goes together with the bots and
        # homeservers it started (they are its children; nothing else is in the group).
        process = subprocess.Popen(
            [sys.executable, str(BENCH / step.args[0]), *step.args[1:]],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            start_new_session=True,
        )
        RUNNING.append(process)
        try:
            if process.wait(timeout=timeout) != 0:
                status, error = "failed", f"exit code {process.returncode}"
        except subprocess.TimeoutExpired:
            status, error = "timeout", f"no result within {round(timeout)} s"
            stop_group(process)
        finally:
            RUNNING.remove(process)
    fresh = result_file.exists() and result_file.stat().st_mtime > before
    if status == "ok" and not fresh:
        status, error = "failed", "no result file written"
    outcome: dict[str, Any] = {
        "status": status,
        "seconds": round(time.monotonic() - started, 1),
        "load_avg_1m_after": load_avg(),
    }
    if error is not None:
        tail = scrub_paths(log_file.read_text("utf-8", errors="replace")).splitlines()[-15:]
        outcome.update(error=error, log_tail=tail)
    return outcome


def run_all(
    budget: float, only: list[str] | None, progress: Callable[[str], None]
) -> dict[str, Any]:
    import tempfile

    previous = json.loads(LATEST.read_text("utf-8")) if LATEST.exists() else {}
    steps: dict[str, Any] = dict(previous.get("steps", {})) if only else {}
    deadline = time.monotonic() + budget
    started = time.monotonic()
    load_before = load_avg()
    with tempfile.TemporaryDirectory(prefix="lotsenbench-logs-") as logs:
        for step in STEPS:
            if only and step.name not in only:
                continue
            left = deadline - time.monotonic()
            if left < 30:
                steps[step.name] = {"status": "skipped", "error": "total budget used up"}
                continue
            progress(f"[{time.strftime('%H:%M:%S')}] {step.name} …")
            steps[step.name] = run_step(step, min(step.timeout, left), Path(logs))
            progress(f"  {steps[step.name]['status']} in {steps[step.name].get('seconds')} s")
    results = {}
    for step in STEPS:
        path = RESULTS / f"{step.result}.json"
        if steps.get(step.name, {}).get("status") == "ok" and path.exists():
            results[step.name] = json.loads(path.read_text("utf-8"))
        elif only and step.name in previous.get("results", {}):
            results[step.name] = previous["results"][step.name]
    return {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "make bench" if not only else f"bench/run_all.py --only {' '.join(only)}",
        "machine": {
            **machine(),
            "load_avg_1m_before": load_before,
            "load_avg_1m_after": load_avg(),
        },
        "total_seconds": round(time.monotonic() - started, 1),
        "budget_seconds": budget,
        "steps": steps,
        "results": results,
    }


# -- the bm25s speed baseline ----------------------------------------------------------------


def bm25_speed_one(size: int) -> dict[str, Any]:
    """bm25s (top-3 retrieval) on the same synthetic knowledge base as ``faq_engine.py``."""
    import bm25s
    from faq_engine import synthetic_kb
    from faq_eval import load_queries

    entries = synthetic_kb(size, 7)
    queries = [q["q"] for split in ("dev", "heldout") for q in load_queries(split)]
    corpus = [
        " ".join([e.question, *e.alternatives, *e.tags, e.category, e.answer]).lower().split()
        for e in entries
    ]
    started = time.perf_counter()
    model = bm25s.BM25()
    model.index(corpus, show_progress=False)
    build_s = time.perf_counter() - started
    vocab = model.vocab_dict

    def search(query: str) -> None:
        tokens = [t for t in query.lower().split() if t in vocab] or [next(iter(vocab))]
        model.retrieve([tokens], k=min(3, size), show_progress=False, n_threads=1)

    for query in queries[:20]:
        search(query)
    latencies = []
    for query in queries:
        started = time.perf_counter()
        search(query)
        latencies.append((time.perf_counter() - started) * 1000)
    return {
        "entries": size,
        "build_s": round(build_s, 3),
        "query_ms_p50": round(percentile(latencies, 50), 3),
        "query_ms_p99": round(percentile(latencies, 99), 3),
        "rss_mb": round(rss_mb(), 1),
    }


def bm25_speed() -> None:
    """Each size in its own process, so memory figures do not add up."""
    from common import write_result

    rows = []
    for size in FAQ_SIZES:
        output = subprocess.run(
            [sys.executable, __file__, "--bm25-size", str(size)],
            check=True,
            capture_output=True,
            text=True,
            timeout=200,
        ).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
    write_result("faq_bm25_speed", {"tokenizer": "lower-cased whitespace", "k": 3, "results": rows})


# -- the report -----------------------------------------------------------------------------------

Row = dict[str, Any]


def _num(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _ratio(a: Any, b: Any) -> float | None:
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return round(a / b, 2)
    return None


def _row(
    figure: str,
    lotsen: Any,
    baseline: Any,
    target: str = "",
    met: bool | None = None,
    ratio: Any = "auto",
    digits: int = 2,
) -> Row:
    return {
        "figure": figure,
        "lotsenbot": lotsen,
        "baseline": baseline,
        "ratio": _ratio(lotsen, baseline) if ratio == "auto" else ratio,
        "target": target,
        "met": met,
        "digits": digits,
    }


def rows_reply(data: dict[str, Any]) -> list[Row]:
    lot, echo, ratio = data["lotsenbot"], data["echo"], data["ratio"]
    n, m = data["questions"], data["clients"]
    return [
        _row(
            f"Reply latency p50, {n} questions in a row (ms) — baseline: echo bot",
            lot["sequential"]["p50_ms"],
            echo["sequential"]["p50_ms"],
            "ratio ≤ 1.3",
            ratio["sequential_p50"] <= 1.3,
            ratio["sequential_p50"],
            1,
        ),
        _row(
            "Reply latency p99 (ms)",
            lot["sequential"]["p99_ms"],
            echo["sequential"]["p99_ms"],
            ratio=ratio["sequential_p99"],
            digits=1,
        ),
        _row(
            f"Burst: {m} clients at once, time until all answered (s)",
            lot["burst"]["wall_s"],
            echo["burst"]["wall_s"],
            "ratio ≤ 1.5",
            ratio["burst_wall"] <= 1.5,
            ratio["burst_wall"],
        ),
        _row(
            "Burst p99 per answer (ms)",
            lot["burst"]["p99_ms"],
            echo["burst"]["p99_ms"],
            ratio=ratio["burst_p99"],
            digits=0,
        ),
        *(
            [
                _row(
                    f"… proposed: sender with {trial['change'].split()[-1]} sends in flight "
                    "(patched in for extra rounds; s)",
                    trial["burst"]["wall_s"],
                    echo["burst"]["wall_s"],
                    "proposal",
                    None,
                    trial["ratio_burst_wall"],
                )
            ]
            if (trial := data.get("sender_concurrency_trial"))
            else []
        ),
        _row(
            "Burst: answers lost (of all rounds)",
            lot["burst"]["lost"],
            echo["burst"]["lost"],
            "none lost",
            lot["burst"]["lost"] == 0,
            ratio=None,
        ),
    ]


def rows_faq(
    engine: dict[str, Any] | None, bm25: dict[str, Any] | None, quality: dict[str, Any] | None
) -> list[Row]:
    rows: list[Row] = []
    base = {r["entries"]: r for r in (bm25 or {}).get("results", [])}
    for r in (engine or {}).get("results", []):
        b = base.get(r["entries"], {})
        size = f"{r['entries']:,}"
        rows += [
            _row(
                f"FAQ p50 per question, {size} entries (ms) — baseline: bm25s top-3",
                r["query_ms_p50"],
                b.get("query_ms_p50"),
                "≤ 2 ms",
                r["query_ms_p50"] <= 2,
                digits=3,
            ),
            _row(
                f"FAQ p99 per question, {size} entries (ms)",
                r["query_ms_p99"],
                b.get("query_ms_p99"),
                "≤ 10 ms",
                r["query_ms_p99"] <= 10,
                digits=3,
            ),
            _row(
                f"FAQ index build, {size} entries (s)",
                r["build_s"],
                b.get("build_s"),
                "≤ 3 s",
                r["build_s"] <= 3,
                digits=3,
            ),
            _row(
                f"FAQ process RSS, {size} entries (MB)",
                r["rss_mb"],
                b.get("rss_mb"),
                "≤ 200 MB",
                r["rss_mb"] <= 200,
                digits=1,
            ),
        ]
    splits = (quality or {}).get("splits", {})
    for split, name in (("heldout", "held-out"), ("fresh", "fresh, written blind")):
        if split not in splits:
            continue
        e, b = splits[split]["engine"], splits[split]["bm25"]
        rows += [
            _row(
                f"FAQ {name}: answered correctly ({e['in_scope']} questions)",
                e["answer_correct"],
                b["answer_correct"],
                "above baseline",
                e["answer_correct"] > b["answer_correct"],
                digits=3,
            ),
            _row(
                f"FAQ {name}: right entry ranked first",
                e["top1"],
                b["top1"],
                "≥ 0.90",
                e["top1"] >= 0.90,
                digits=3,
            ),
            _row(
                f"FAQ {name}: right entry in top 3",
                e["top3"],
                b["top3"],
                "≥ 0.97",
                e["top3"] >= 0.97,
                digits=3,
            ),
            _row(
                f"FAQ {name}: out-of-scope questions declined ({e['out_of_scope']})",
                e["oos_none"],
                b["oos_none"],
                "≥ 0.85",
                e["oos_none"] >= 0.85,
                digits=3,
            ),
            _row(
                f"FAQ {name}: wrong answers given (share of in-scope)",
                e["wrong_answer"],
                None,
                digits=3,
            ),
        ]
    return rows


def rows_startup(data: dict[str, Any]) -> list[Row]:
    full, echo, empty = data["full"], data["echo"], data["empty"]
    what = f"{data['faq_entries']:,} FAQ entries, {data['tickets']:,} past requests"
    return [
        _row(
            f"Start-up to first completed sync, restart, {what} (s) — baseline: echo bot",
            full["start_to_ready_s"],
            echo["start_to_ready_s"],
            "≤ 3 s",
            full["start_to_ready_s"] <= 3,
            digits=3,
        ),
        _row(
            "… same, baseline: lotsenbot with an empty database (s)",
            full["start_to_ready_s"],
            empty["start_to_ready_s"],
            digits=3,
        ),
        _row(
            "… first start on a new device (s)",
            full["first_start"]["start_to_ready_s"],
            empty["first_start"]["start_to_ready_s"],
            digits=3,
        ),
        _row(
            "… from process spawn, imports included (s)",
            full["spawn_to_ready_s"],
            echo["spawn_to_ready_s"],
            digits=3,
        ),
        _row(
            "… until the FAQ index, built in a worker thread meanwhile, is ready (s) — "
            "baseline: lotsenbot with an empty database",
            full["index_ready_s"],
            empty["index_ready_s"],
            digits=3,
        ),
        _row(
            "RSS after start (MB) — baseline: echo bot",
            full["rss_mb"],
            echo["rss_mb"],
            "≤ 200 MB",
            full["rss_mb"] <= 200,
            digits=1,
        ),
        _row(
            "… baseline: lotsenbot with an empty database (MB)",
            full["rss_mb"],
            empty["rss_mb"],
            digits=1,
        ),
    ]


def rows_fanout(
    data: dict[str, Any], plain: dict[str, Any] | None = None, compared_with: str = "plain chats"
) -> list[Row]:
    """Rows of one fan-out result. For the encrypted runs, ``plain`` is the result of the
    runs they are compared with in the same ``make bench`` (``compared_with``): their relaxed
    times are the baseline."""
    rows: list[Row] = []
    rate, burst = SYNAPSE_RC_MESSAGE
    baseline = {
        run["direct_chats"]: run["seconds_total"]
        for run in (plain or {}).get("runs", [])
        if run["rate_limits"] == "relaxed"
    }
    kind = "encrypted chats" if data.get("encrypted") else "chats"
    if data.get("recipient_devices"):
        kind = "encrypted chats, recipients with device keys,"
    compared = f" — baseline: the same with {compared_with}" if plain is not None else ""
    for run in data.get("runs", []):
        v = run["verification"]
        once = f"{v['exactly_one']}/{v['checked']} exactly once"
        if "readers" in run:
            once += f", {run['readers']['decrypted_own_copy']}/{run['readers']['readers']} read"
        if run["rate_limits"] == "relaxed":
            rows.append(
                _row(
                    f"Announcement to {run['recipients']} recipients, relaxed limits, "
                    f"{kind} {run['direct_chats']} (s) [{once}]{compared}",
                    run["seconds_total"],
                    baseline.get(run["direct_chats"]),
                    "every copy exactly once" + (", readable" if "readers" in run else ""),
                    v["exactly_one"] == v["checked"] == run["recipients"]
                    and run.get("readers", {}).get("decrypted_own_copy")
                    == run.get("readers", {}).get("readers"),
                    digits=1,
                )
            )
            continue
        floor = max(0.0, (run["recipients"] - burst) / rate)
        rows.append(
            _row(
                f"Announcement to {run['recipients']} recipients, Synapse's default limits"
                f" (s) [{once}] — baseline: the limiter's minimum",
                run["seconds_total"],
                round(floor, 1),
                "every copy exactly once",
                v["exactly_one"] == v["checked"] == run["recipients"],
                digits=1,
            )
        )
        full = data.get("recipients", 500)
        if "extrapolated_seconds_for_full_count" in run:
            rows.append(
                _row(
                    f"… extrapolated to {full} recipients, not measured (s)",
                    run["extrapolated_seconds_for_full_count"],
                    round((full - burst) / rate, 1),
                    digits=0,
                )
            )
    return rows


def rows_soak(data: dict[str, Any]) -> list[Row]:
    rss, db, growth = data["rss_mb"], data["db_mb"], data["db_growth"]
    minutes = _num(data["minutes"], 0) if data["minutes"] >= 1 else str(data["minutes"])
    lost = sum(data["lost"].values())
    return [
        _row(
            f"Soak {minutes} min, {data['actions_total']:,} actions: RSS start → end (MB)",
            rss["end"],
            rss["start"],
            "no growth beyond warm-up",
            rss["end"] - rss["middle"] <= max(5.0, 0.05 * rss["middle"]),
            digits=1,
        ),
        _row(
            "… RSS slope over the second half (MB/min)",
            rss["slope_second_half_mb_per_min"],
            None,
            digits=3,
        ),
        _row("… database start → end (MB)", db["end"], db["start"], digits=2),
        _row(
            "… file growth beyond the tables' own growth (bytes)",
            growth["beyond_tables_bytes"],
            growth["file_bytes"],
            "≈ 0 (no waste)",
            growth["beyond_tables_bytes"] <= max(65536, 0.1 * max(growth["file_bytes"], 0)),
            ratio=None,
        ),
        _row("… answers lost", lost, None, "none", lost == 0, ratio=None),
    ]


def table(rows: list[Row]) -> list[str]:
    lines = [
        "| Figure | lotsenbot | Baseline | Ratio | Target | Met? |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        met = "" if r["met"] is None else ("✅ yes" if r["met"] else "❌ no")
        lines.append(
            f"| {r['figure']} | {_num(r['lotsenbot'], r['digits'])} | "
            f"{_num(r['baseline'], r['digits'])} | {_num(r['ratio'])} | {r['target']} | {met} |"
        )
    return lines


def burst_notes(data: dict[str, Any]) -> list[str]:
    """Where lotsenbot's burst time went, from its own inbox and outbox records."""

    def stages(rounds: list[dict[str, Any]]) -> str:
        return "; ".join(
            f"on the homeserver {b['sent_by_server']['last_s']:.1f} s, stored "
            f"{b['stored']['last_s']:.1f} s, handled {b['handled']['last_s']:.1f} s, last reply "
            f"sent {b['reply_sent']['last_s']:.1f} s"
            for b in rounds
            if b
        )

    lines = []
    rounds = data["lotsenbot"]["burst"].get("rounds_breakdown")
    if rounds:
        lines.append(
            "- Where lotsenbot's burst time goes, from its own records (seconds after the round "
            f"started, last of the {data['clients']} messages): {stages(rounds)}. Receiving "
            "(one sync batch with all questions, for both bots alike) and sending the replies "
            "take the time; handling all questions takes well under a second. lotsenbot's "
            f"sender has at most {data.get('sender_concurrency', '?')} sends in flight "
            "(`lotsenbot.matrix.sender.CONCURRENCY`); the echo bot sends all at once."
        )
    trial = data.get("sender_concurrency_trial")
    if trial:
        lines.append(
            f"- Proposed change `{trial['change']}` (rows for the same target stay in order), "
            "patched in for two extra lotsenbot rounds in the same session (order "
            f"{data.get('order', '?')}): burst wall time {trial['burst']['wall_s']} s against "
            f"{data['lotsenbot']['burst']['wall_s']} s unpatched and "
            f"{data['echo']['burst']['wall_s']} s for the echo bot (ratio "
            f"{trial['ratio_burst_wall']} instead of {data['ratio']['burst_wall']}); "
            f"{stages(trial['burst'].get('rounds_breakdown', []))}."
        )
    return lines


def startup_notes(data: dict[str, Any]) -> list[str]:
    """Where the start-up time goes."""
    restart = data["full"]["runs"][len(data["full"]["runs"]) // 2]
    phases = sorted(restart["phases_s"].items(), key=lambda kv: -kv[1])
    parts = ", ".join(f"{name} {seconds:.3f} s" for name, seconds in phases if seconds >= 0.005)
    full, empty = data["full"], data["empty"]
    lines = [
        f"- One restart with the full database, phase by phase: {parts}; the first sync "
        f"{restart['first_sync_s']:.3f} s after `start()` returned. Python imports before "
        f"`App.start()`: {restart['imports_s']:.2f} s (not in the start-up figure; in the "
        "spawn figure). `feature:faq` reads the entries and starts `FaqIndex.build` in a "
        "worker thread; the index was ready "
        f"{full['index_ready_s']:.3f} s after start (median), while the bot logged in and "
        "synced; a question in those seconds waits for it. The build analyses every text of "
        "every entry (`bench/faq_engine.py`: normalising, tokenising, phrase and compound "
        "analysis); it shares the interpreter lock with login and the first sync.",
        f"- Memory: the data costs {full['rss_mb'] - empty['rss_mb']:.0f} MB "
        f"({full['rss_mb']} MB against {empty['rss_mb']} MB with an empty database) — the FAQ "
        "index and its 10,000 entries; the requests are not held in memory. The empty bot "
        f"itself needs {empty['rss_mb'] - data['echo']['rss_mb']:.0f} MB more than the echo bot "
        "(its libraries).",
        "- The single restarts (s): "
        + ", ".join(f"{run['start_to_ready_s']:.2f}" for run in full["runs"])
        + " (full database); "
        + ", ".join(f"{run['start_to_ready_s']:.2f}" for run in empty["runs"])
        + " (empty). The spread is the shared machine's; the ratios are steadier.",
        f"- Database: {data['full_database']['size_mb']} MB with the data "
        f"({data['empty_database']['size_mb']} MB empty).",
    ]
    return lines


def report(latest: dict[str, Any], soak: dict[str, Any] | None) -> str:
    res = latest["results"]
    m = latest["machine"]
    sections: list[tuple[str, Callable[[], list[Row]]]] = [
        ("reply_latency", lambda: rows_reply(res["reply_latency"])),
        ("startup", lambda: rows_startup(res["startup"])),
        (
            "faq_engine",
            lambda: rows_faq(res.get("faq_engine"), res.get("faq_bm25_speed"), res.get("faq_eval")),
        ),
        ("announce_fanout", lambda: rows_fanout(res["announce_fanout"])),
        (
            "announce_fanout_encrypted",
            lambda: rows_fanout(res["announce_fanout_encrypted"], res.get("announce_fanout") or {}),
        ),
        (
            "announce_fanout_devices",
            lambda: rows_fanout(
                res["announce_fanout_devices"],
                res.get("announce_fanout_encrypted") or {},
                "recipients without device keys",
            ),
        ),
    ]
    full_run = RESULTS / FULL_DEFAULT_FANOUT
    if full_run.exists():
        # The 41-minute run with 500 recipients under Synapse's default limits is not part
        # of `make bench`; it was run by hand and its result kept next to the others.
        full = json.loads(full_run.read_text("utf-8"))
        full["runs"] = [r for r in full.get("runs", []) if r.get("rate_limits") == "default"]
        sections.append((FULL_DEFAULT_FANOUT, lambda: rows_fanout(full)))
        res = {**res, FULL_DEFAULT_FANOUT: full}
    rows: list[Row] = []
    missing = []
    for name, build in sections:
        if name in res:
            rows += build()
        else:
            missing.append(name)
    if soak is not None:
        rows += rows_soak(soak)
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`bench/run_all.py`); the soak rows by `make bench-soak`. "
        "Do not edit by hand — run `.venv/bin/python bench/run_all.py --report-only` to "
        "rewrite this file from `bench/results/`.",
        "",
        f"Measured {latest['measured_at']} with `{latest['command']}` in "
        f"{latest['total_seconds'] / 60:.1f} min, on: {m['cpus']} CPUs "
        f"({m.get('cpu_model', '?')}), {m['memory_gib']} GiB RAM, {m['platform']}, "
        f"Python {m['python']}. The machine was shared: "
        f"load average {_num(m.get('load_avg_1m_before'))} before and "
        f"{_num(m.get('load_avg_1m_after'))} after the run — which is why every figure stands "
        "next to a baseline measured in the same run, and the ratio is the figure to compare.",
        "",
        *table(rows),
        "",
    ]
    if missing:
        lines += [
            f"Not measured in this run: {', '.join(missing)} (see `steps` in "
            "`bench/results/latest.json`).",
            "",
        ]
    lines += ["## How each figure is measured", ""]
    if "reply_latency" in res:
        data = res["reply_latency"]
        lines += [
            "**Reply latency and burst** (`bench/reply_latency.py`). One Synapse on loopback, both "
            "bots in the benchmark process next to the clients. The baseline is "
            "`bench/echo_bot.py`: a matrix-nio bot of a few dozen lines that answers each text "
            "with a notice — with the same presence-free sync filter lotsenbot uses and each "
            "reply sent in its own task (a plain nio callback would answer a burst one by one "
            "and flatter lotsenbot). The staff client asks each bot in turn "
            f"({data['questions']} FAQ questions from `tests/data/faq_eval/dev.yaml` each, the "
            "order alternating), so both see the same load. In the burst, "
            f"{data['clients']} clients send one question each at the same moment; every client "
            "asks each bot twice in the order echo, lotsenbot, lotsenbot, echo; the wall time is "
            "the mean of a bot's two rounds, p99 over all its answers; an answer is lost when it "
            "has not arrived after 120 s. lotsenbot answers from its starter knowledge base "
            "(answer, suggestions or an offer to open a request — a real reply each time). "
            f"Burst rounds (s): echo {data['echo']['burst'].get('rounds_wall_s')}, lotsenbot "
            f"{data['lotsenbot']['burst'].get('rounds_wall_s')}. Both bots need several seconds "
            "for 200 answers because Synapse and the 200 syncing clients share the same two "
            "cores; the difference between the bots is lotsenbot's own work.",
            "",
            *burst_notes(data),
            "",
        ]
    if "startup" in res:
        data = res["startup"]
        lines += [
            "**Start-up** (`bench/startup.py`). A database with "
            f"{data['faq_entries']:,} synthetic FAQ entries (written through the FAQ store, "
            f"generated like `bench/faq_engine.py`'s) and {data['tickets']:,} resolved requests "
            "with five events each (created, assigned, claimed, reply, resolved) over the last "
            "170 days. The bot starts in a fresh process; measured from `App.start()` to "
            "`app.ready` (the first completed sync), median of "
            f"{data['restarts']} restarts on the same device, and the RSS 3 s after that. The "
            "echo bot's figure is login plus its first sync, in its own process.",
            "",
            *startup_notes(data),
            "",
        ]
    if "faq_engine" in res:
        lines += [
            "**FAQ engine** (`bench/faq_engine.py`, `bench/faq_eval.py`). Speed on synthetic "
            "knowledge bases derived from the evaluation set, each size in its own process; "
            "the speed baseline is bm25s (lower-cased whitespace tokens, top-3 retrieval, one "
            "thread) on the same entries and questions, also one process per size. Accuracy "
            "on the held-out split (`tests/data/faq_eval/heldout.yaml`) and on a second one "
            "written blind from the knowledge base alone (`fresh.yaml`, see the folder's "
            "README), thresholds tuned on `dev` only; bm25s gets the abstain threshold that "
            "is best on `dev`.",
            "",
        ]
    if "announce_fanout" in res:
        rate, burst = SYNAPSE_RC_MESSAGE
        lines += [
            "**Announcement fan-out** (`bench/announce_fanout.py`). 500 pilots of one "
            "department, announced through Matrix by a coordinator; from `!senden` until no copy "
            "is pending, then every recipient's chat is read through the admin API and the "
            "copies counted. Relaxed limits: first with the direct chats created on demand, "
            "then again to the same people. Synapse's default limits "
            f"(`rc_message` {rate}/s, burst {burst}) allow one message per 5 s, so 500 "
            f"recipients would take about {round((500 - burst) / rate / 60)} min; `make bench` "
            f"measures a sample of {FANOUT_DEFAULT_SAMPLE} and extrapolates at the measured "
            "steady rate (marked as not measured). Its baseline is the limiter's own minimum, "
            "(recipients − burst) / rate. There is no baseline for the relaxed runs.",
            "",
        ]
    if "announce_fanout_encrypted" in res:
        lines += [
            "**Announcement fan-out, encrypted direct chats** (`bench/announce_fanout.py "
            "--encrypted`): the same two relaxed runs with `encrypt_direct_chats` on, the "
            "product default (the plain runs above turn it off so that each copy's "
            "announcement id can be read). The copies are counted as the bot's encrypted "
            "events in each recipient's chat within the run's time window (the bot sends "
            "nothing else there). The recipients are plain clients without device keys, so the "
            "bot creates encrypted rooms and encrypts every copy but shares the room key with "
            "no device: key claims and to-device messages for real recipients' devices are "
            "not in these figures. Baseline: the plain runs of the same `make bench`.",
            "",
        ]
    if "announce_fanout_devices" in res:
        lines += [
            "**Announcement fan-out, recipients with device keys** (`bench/announce_fanout.py "
            "--devices`): as above, but every recipient first logs in once with an encrypting "
            "client and uploads device and one-time keys, so for each new chat the bot queries "
            "the device, claims a one-time key, sets up an Olm session and sends the room key "
            "to the device. Ten recipients stay logged in and decrypt their copy after each "
            'run ("read"). Once a chat\'s room key has been shared, later copies reuse it, so '
            "the second run costs about what it costs without device keys. Baseline: the "
            "encrypted runs without device keys of the same `make bench`.",
            "",
        ]
    if soak is not None:
        lines += [
            f"**Soak** (`bench/soak.py`, `make bench-soak`), measured {soak['measured_at']} for "
            f"**{soak['minutes']} minutes** at {soak['rate_per_s']} actions/s: the bot as its own "
            f"process (`lotsenbot run`); {soak['actions_total']:,} answered actions ("
            + ", ".join(f"{kind} {count}" for kind, count in sorted(soak["actions"].items()))
            + f"), lost {sum(soak['lost'].values()) or 'none'}. RSS (MB) start "
            f"{soak['rss_mb']['start']}, middle {soak['rss_mb']['middle']}, end "
            f"{soak['rss_mb']['end']}, max {soak['rss_mb']['max']}. Database "
            f"{soak['db_mb']['start']} → {soak['db_mb']['end']} MB "
            f'({soak["db_growth"]["per_action_bytes"]} bytes per action). The "met" rule for '
            "RSS: the second half adds at most 5 MB (or 5 %); for the file: it grows at most "
            "64 KiB (or 10 %) more than its tables and indexes do (`dbstat`). Table growth: "
            + ", ".join(
                f"{k} +{v['rows_added']} rows/+{v['bytes_added']:,} B"
                for k, v in soak["db_growth"]["tables"].items()
            )
            + ".",
            "",
        ]
    lines += ["## Steps of this run", "", "| Step | Status | Seconds |", "|---|---|---:|"]
    for name, step in latest["steps"].items():
        status = step["status"] + (f" ({step['error']})" if step.get("error") else "")
        lines.append(f"| {name} | {status} | {_num(step.get('seconds'), 1)} |")
    return "\n".join(lines) + "\n"


def write_report() -> None:
    latest: dict[str, Any] = {
        "measured_at": "–",
        "command": "make bench (not run yet)",
        "machine": machine(),
        "total_seconds": 0,
        "steps": {},
        "results": {},
    }
    if LATEST.exists():
        latest = json.loads(LATEST.read_text("utf-8"))
    soak_path = RESULTS / "soak.json"
    soak = json.loads(soak_path.read_text("utf-8")) if soak_path.exists() else None
    REPORT.write_text(report(latest, soak), "utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=1500, help="seconds for all benchmarks")
    parser.add_argument("--only", nargs="+", choices=[s.name for s in STEPS])
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--bm25-speed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bm25-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bm25_size is not None:
        print(json.dumps(bm25_speed_one(args.bm25_size)))
        return 0
    if args.bm25_speed:
        bm25_speed()
        return 0
    if not args.report_only:
        signal.signal(signal.SIGTERM, stop_on_signal)
        signal.signal(signal.SIGINT, stop_on_signal)
        latest = run_all(args.budget, args.only, lambda text: print(text, flush=True))
        LATEST.write_text(json.dumps(latest, indent=2, ensure_ascii=False) + "\n", "utf-8")
    write_report()
    written = [REPORT] if args.report_only else [LATEST, REPORT]
    print("written:", ", ".join(str(path.relative_to(ROOT)) for path in written))
    steps = json.loads(LATEST.read_text("utf-8"))["steps"] if LATEST.exists() else {}
    failed = [name for name, step in steps.items() if step["status"] != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
