"""Test-run plugin: the reliability tests record what they measured, for the README.

The README's "Zuverlässigkeit / Reliability" section must state figures produced by a test
run, not typed by hand. Each reliability test calls ``reliability.record(...)`` after its
assertions passed; at the end of the session the records are merged into
``tests/.reliability.json`` (one entry per scenario, so running a single test module updates
only its own entries), which ``scripts/reliability_report.py`` renders into the README.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

RELIABILITY_FILE = Path(__file__).parent / ".reliability.json"
_STASH_KEY = pytest.StashKey["Reliability"]()


class Reliability:
    """Scenario records of this run; written out by :func:`pytest_sessionfinish`."""

    def __init__(self) -> None:
        self.scenarios: dict[str, dict[str, Any]] = {}

    def record(self, scenario: str, *, kind: str, title: str, **figures: Any) -> None:
        """Remember one passed scenario: ``kind`` is "fault", "hostile" or "access"."""
        self.scenarios[scenario] = {
            "kind": kind,
            "title": title,
            "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **figures,
        }


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_STASH_KEY] = Reliability()


@pytest.fixture(scope="session")
def reliability(request: pytest.FixtureRequest) -> Reliability:
    """Where reliability tests put their figures (see the module docstring)."""
    return request.config.stash[_STASH_KEY]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    records = session.config.stash.get(_STASH_KEY, None)
    if records is None or not records.scenarios:
        return
    target = Path(os.environ.get("LOTSENBOT_RELIABILITY_FILE") or RELIABILITY_FILE)
    try:
        existing = json.loads(target.read_text("utf-8"))
    except (FileNotFoundError, ValueError):
        existing = {}
    scenarios = existing.get("scenarios") if isinstance(existing, dict) else None
    merged = dict(scenarios) if isinstance(scenarios, dict) else {}
    merged.update(records.scenarios)
    data = {"updated": datetime.now(UTC).isoformat(timespec="seconds"), "scenarios": merged}
    target.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


@pytest.fixture(autouse=True)
def _no_machine_thesaurus(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Tests give the same answers whether or not this machine has mythes-de installed: the
    bot looks for OpenThesaurus in an empty folder (tests of the thesaurus bring their own
    files). Bots started as processes get ``[faq] thesaurus = false`` (``bot_sections``)."""
    import lotsenbot.faq.feature

    empty = tmp_path_factory.mktemp("no-thesaurus")
    monkeypatch.setattr(lotsenbot.faq.feature, "THESAURUS_DIR", empty)
