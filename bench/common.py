"""Shared set-up for benchmarks: a private Synapse on loopback, accounts, the bot, clients.

Every benchmark bounds its own time (``deadline``) and stops what it started.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import secrets
import signal
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))


def machine() -> dict[str, Any]:
    """What the figures were measured on; absolute times mean little without it."""
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    cpu_model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
    }


def rss_mb() -> float:
    """Current resident set size of this process in MB (from /proc, else peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50) * 1000, 2),
        "p99_ms": round(percentile(values, 99) * 1000, 2),
        "mean_ms": round(statistics.fmean(values) * 1000, 2) if values else float("nan"),
    }


def password() -> str:
    return secrets.token_urlsafe(12)


def scrub_paths(text: str) -> str:
    """Folders of this machine out of text that ends up in the repository (profiles, logs):
    the checkout becomes relative, interpreter and temporary folders get placeholders."""
    import tempfile

    prefixes = {
        str(ROOT) + os.sep: "",
        sys.prefix + os.sep: "<venv>/",
        sys.base_prefix + os.sep: "<python>/",
        tempfile.gettempdir() + os.sep: "<tmp>/",
        str(Path.home()) + os.sep: "<home>/",
    }
    for prefix in sorted(prefixes, key=len, reverse=True):
        text = text.replace(prefix, prefixes[prefix])
    return text


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = {"benchmark": name, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine(), **data}  # fmt: skip
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return path


def die_with_parent(parent_pid: int) -> Callable[[], None]:
    """Pre-exec hook: Linux sends the child SIGTERM when the benchmark process dies, so a bot
    started by an interrupted benchmark never outlives it."""

    def hook() -> None:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the parent was gone before prctl took effect
            os._exit(1)

    return hook
