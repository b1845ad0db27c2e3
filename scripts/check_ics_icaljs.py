"""Check that Thunderbird's calendar parser reads our .ics files as we mean them.

Thunderbird (and several web calendars) parse iCalendar with Mozilla's ``ical.js``. This
script writes the calendar files of typical and awkward meetups with
``lotsenbot.meetups.ics``, lets ``ical.js`` expand every series (RRULE, EXDATE,
RECURRENCE-ID overrides, our VTIMEZONE definitions) and compares each occurrence's start,
end and location in UTC with lotsenbot's own expansion (``lotsenbot.meetups.recurrence``).

It needs Node.js and npm, so it is not part of ``make test``; run it after changing the
calendar code::

    .venv/bin/python scripts/check_ics_icaljs.py [--icaljs PATH/TO/dist/ical.js]

Without ``--icaljs`` it installs ``ical.js`` 2.x with npm into a cache folder
(``$XDG_CACHE_HOME/lotsenbot-icaljs``, else ``~/.cache/lotsenbot-icaljs``). Exit code 0 when
every occurrence agrees, 1 otherwise, 2 when Node.js or ical.js is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lotsenbot.meetups.ics import CalendarEntry, build_calendar, meetup_uid  # noqa: E402
from lotsenbot.meetups.recurrence import OccurrenceChange, Series, expand  # noqa: E402

SERVER = "stadt.example"
STAMP = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
NODE_SCRIPT = Path(__file__).with_name("icaljs_occurrences.mjs")
ICALJS_VERSION = "2"


def utc(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def scenarios() -> dict[str, CalendarEntry]:
    """Meetups a network really schedules, plus the zone rules that break naive code."""
    weekly = Series(
        start=datetime(2027, 1, 12, 14),
        duration=timedelta(minutes=90),
        rrule="FREQ=WEEKLY;BYDAY=TU;UNTIL=20270630T215959Z",
        cancelled=frozenset({utc(2027, 1, 19, 13), utc(2027, 4, 6, 12)}),
        changes={
            utc(2027, 1, 26, 13): OccurrenceChange(start=utc(2027, 1, 27, 13), location="Raum 2"),
            # Moved across the spring switch, with a longer slot.
            utc(2027, 3, 23, 13): OccurrenceChange(
                start=utc(2027, 3, 30, 7), duration=timedelta(hours=3)
            ),
        },
    )
    monthly = Series(
        start=datetime(2027, 9, 8, 9, 30),
        duration=timedelta(hours=2),
        rrule="FREQ=MONTHLY;BYDAY=2WE;COUNT=12",  # "jeden zweiten Mittwoch im Monat"
        changes={utc(2027, 11, 10, 8, 30): OccurrenceChange(link="https://konferenz.example.de/b")},
    )
    biweekly = Series(
        start=datetime(2027, 10, 14, 8),
        duration=timedelta(hours=1),
        rrule="FREQ=WEEKLY;INTERVAL=2;BYDAY=TH;UNTIL=20280401T000000Z",
    )
    # Chile switches at 24:00: no yearly RRULE in VTIMEZONE, an explicit list instead.
    santiago = Series(
        start=datetime(2027, 3, 1, 10),
        tzid="America/Santiago",
        duration=timedelta(hours=1),
        rrule="FREQ=WEEKLY;BYDAY=MO;COUNT=40",
    )
    one_off = Series(start=datetime(2027, 3, 28, 10), duration=timedelta(minutes=45))
    base = {"sequence": 2, "location": "Rathaus, Raum 1.12", "description": "Austausch; äöüß"}
    return {
        "wöchentlich mit Ausfällen und Verschiebungen": CalendarEntry(
            meetup_id=1, title="Vernetzungstreffen", series=weekly, **base
        ),
        "jeden zweiten Mittwoch, 12 Termine": CalendarEntry(
            meetup_id=2,
            title="Lotsenrunde",
            series=monthly,
            link="https://konferenz.example.de/a",
            sequence=1,
        ),
        "alle zwei Wochen über den Winter": CalendarEntry(
            meetup_id=3, title="Sprechstunde", series=biweekly, **base
        ),
        "America/Santiago (Umstellung um 24 Uhr)": CalendarEntry(
            meetup_id=4, title="Partnerstadt", series=santiago, location="Online"
        ),
        "einmalig am Tag der Sommerzeit": CalendarEntry(
            meetup_id=5, title="Sondertermin", series=one_off, **base
        ),
        "abgesagt": CalendarEntry(
            meetup_id=6, title="Abgesagt", series=one_off, cancelled=True, **base
        ),
    }


def expected(entry: CalendarEntry) -> list[list[str | None]]:
    rows = []
    for occurrence in expand(entry.series, after=utc(1970, 1, 1, 0), limit=500):
        change = occurrence.change
        location = change.location if change and change.location is not None else entry.location
        link = change.link if change and change.link is not None else entry.link
        rows.append([_iso(occurrence.start), _iso(occurrence.end), location or link])
    return rows


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def find_icaljs(given: Path | None) -> Path | None:
    if given is not None:
        return given if given.is_file() else None
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lotsenbot-icaljs"
    dist = cache / "node_modules" / "ical.js" / "dist" / "ical.js"
    if not dist.is_file():
        npm = shutil.which("npm")
        if npm is None:
            return None
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--silent", "--no-save", "--prefix", str(cache),
             f"ical.js@{ICALJS_VERSION}"],
            check=True,
        )  # fmt: skip
    return dist if dist.is_file() else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--icaljs", type=Path, help="ical.js's dist/ical.js")
    args = parser.parse_args()
    node = shutil.which("node")
    icaljs = find_icaljs(args.icaljs)
    if node is None or icaljs is None:
        print("Node.js und ical.js werden gebraucht (npm install ical.js).", file=sys.stderr)
        return 2
    version = json.loads((icaljs.parents[1] / "package.json").read_text())["version"]
    entries = scenarios()
    failures = 0
    total = 0
    with tempfile.TemporaryDirectory() as folder:
        files = {}
        for number, (name, entry) in enumerate(entries.items(), 1):
            path = Path(folder) / f"treffen-{number}.ics"
            path.write_bytes(build_calendar([entry], server_name=SERVER, dtstamp=STAMP))
            files[str(path)] = name
        output = subprocess.run(
            [node, str(NODE_SCRIPT), *files],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "ICALJS": str(icaljs)},
        ).stdout
        print(f"ical.js {version}, Node.js {subprocess.getoutput(f'{node} --version')}")
        for line in output.splitlines():
            result = json.loads(line)
            name = files[result["file"]]
            entry = entries[name]
            (event,) = result["events"]
            theirs = sorted(event["occurrences"])
            ours = expected(entry)
            status = "CANCELLED" if entry.cancelled else "CONFIRMED"
            ok = (
                theirs == ours
                and event["uid"] == meetup_uid(entry.meetup_id, SERVER)
                and event["status"] == status
            )
            total += len(ours)
            failures += not ok
            print(f"{'ok ' if ok else 'FEHLER'} {name}: {len(ours)} Termine, ical.js {len(theirs)}")
            if not ok:
                for mine, other in zip(ours, theirs, strict=False):
                    if mine != other:
                        print(f"    lotsenbot {mine}\n    ical.js   {other}")
                        break
                print(f"    uid {event['uid']}, status {event['status']}")
    print(f"{len(entries) - failures} von {len(entries)} Kalenderdateien, {total} Termine geprüft")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
