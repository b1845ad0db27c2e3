"""Render the README section "Zuverlässigkeit / Reliability" from the last test run.

The reliability tests (``tests/integration/test_faults.py``, ``test_hostile.py``,
``test_access.py``) record what they measured in ``tests/.reliability.json`` (see
``tests/conftest.py``); this script turns those records into the Markdown between the
markers ``<!-- reliability:start -->`` and ``<!-- reliability:end -->`` in README.md, so
the figures there always come from a run and never from someone's keyboard.

Usage: ``python scripts/reliability_report.py [--json FILE] [--readme FILE] [--print]``.
Exit code 1 when there is nothing to render or the markers are missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
START = "<!-- reliability:start -->"
END = "<!-- reliability:end -->"

# German labels for the figures a fault scenario may carry beyond the four counts.
LABELS = {
    "unfinished_at_kill": "beim Abbruch noch offen",
    "sent_at_kill": "vor dem Abbruch gesendet",
    "resends_deduplicated": "Wiederholungen vom Homeserver verworfen",
    "outage_seconds": "Ausfall (s)",
    "sync_attempts_during_outage": "Sync-Versuche im Ausfall",
    "send_attempts_during_outage": "Sendeversuche im Ausfall",
    "answered_within_seconds_after_restart": "beantwortet nach Neustart (s)",
    "rate_limit_pauses": "Pausen nach retry_after_ms",
    "seconds": "Dauer (s)",
    "locks": "Sperren",
}
COUNTS = ("messages", "answered", "lost", "duplicated")


def _figures(record: dict[str, Any]) -> str:
    skip = {"kind", "title", "recorded_at", *COUNTS}
    parts = [f"{LABELS.get(key, key)}: {value}" for key, value in record.items() if key not in skip]
    return "; ".join(parts) or "–"


def render(data: dict[str, Any]) -> str:
    """The Markdown of the section (without the markers)."""
    scenarios: dict[str, dict[str, Any]] = data.get("scenarios", {})
    faults = {k: v for k, v in scenarios.items() if v.get("kind") == "fault"}
    hostile = [v for v in scenarios.values() if v.get("kind") == "hostile"]
    access = [v for v in scenarios.values() if v.get("kind") == "access"]
    day = str(data.get("updated", ""))[:10]
    lines = [
        f"Zahlen aus dem Testlauf vom {day}, erzeugt von `scripts/reliability_report.py` aus "
        "`tests/.reliability.json`. [Figures produced by the test run, not typed by hand.]",
        "",
    ]
    if faults:
        total = {key: sum(int(v.get(key, 0)) for v in faults.values()) for key in COUNTS}
        lines += [
            f"**Störfälle / Fault scenarios:** {len(faults)} überstanden, "
            f"{total['messages']} Nachrichten, {total['answered']} beantwortet, "
            f"**{total['lost']} verloren, {total['duplicated']} doppelt**.",
            "",
            "| Störfall | Nachrichten | beantwortet | verloren | doppelt | Messwerte |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for record in faults.values():
            counts = " | ".join(str(record.get(key, "–")) for key in COUNTS)
            lines.append(f"| {record['title']} | {counts} | {_figures(record)} |")
        lines.append("")
    for record in hostile:
        by = record.get("by_expectation", {})
        lines += [
            f"**Feindliche Eingaben / Hostile input:** {record['inputs']} Nachrichten aus "
            f"`tests/data/hostile/` ({by.get('answer', 0)} beantwortet, "
            f"{by.get('error', 0)} mit Fehlercode, {by.get('ignore', 0)} bewusst ignoriert, "
            f"{by.get('rejected', 0)} schon vom Homeserver abgewiesen) und "
            f"{record['generated_command_inputs']} generierte Aufrufe "
            f"({record['commands']} Befehle mit unsinnigen Argumenten): "
            f"{record['failures']} Abweichungen, {record['internal_errors']} interne Fehler, "
            f"{record['unsafe_messages']} unsichere von {record['bot_messages_checked']} "
            "geprüften Bot-Nachrichten (HTML, fremde Links, @room); der Bot lief danach weiter.",
            "",
        ]
    for record in access:
        lines += [
            f"**Zugriff / Access:** {record['commands']} Befehle × {record['roles']} Rollen = "
            f"{record['tries']} Versuche, {record['denied_as_expected']} Ablehnungen genau wie "
            f"deklariert, {record['mismatches']} Abweichungen; Nutzer fremder Server: "
            f"{record['foreign_tries']} Versuche, {record['foreign_answers']} Antworten.",
            "",
        ]
    lines += [
        "Neu erzeugen / Regenerate: `make test` (oder nur `.venv/bin/python -m pytest "
        "tests/integration/test_faults.py tests/integration/test_hostile.py "
        "tests/integration/test_access.py`), danach "
        "`.venv/bin/python scripts/reliability_report.py`.",
    ]
    return "\n".join(lines)


def update_readme(readme: Path, section: str) -> None:
    text = readme.read_text("utf-8")
    if START not in text or END not in text or text.index(START) > text.index(END):
        raise ValueError(f"{readme}: Markierungen {START} … {END} fehlen")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{section}\n{END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=ROOT / "tests" / ".reliability.json")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--print", action="store_true", help="nur ausgeben, README nicht ändern")
    args = parser.parse_args(argv)
    try:
        data = json.loads(args.json.read_text("utf-8"))
    except FileNotFoundError:
        print(f"{args.json} fehlt: erst die Zuverlässigkeitstests laufen lassen", file=sys.stderr)
        return 1
    if not data.get("scenarios"):
        print(f"{args.json} enthält keine Szenarien", file=sys.stderr)
        return 1
    section = render(data)
    if args.print:
        print(section)
        return 0
    try:
        update_readme(args.readme, section)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"{args.readme}: Abschnitt Zuverlässigkeit aktualisiert")
    return 0


if __name__ == "__main__":
    sys.exit(main())
