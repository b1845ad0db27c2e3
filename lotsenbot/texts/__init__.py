"""The message catalogue: every text a user sees, in German and English.

Texts live in ``texts/<lang>/<feature>.toml``; a key ``help.title`` in ``core.toml`` is
addressed as ``core.help.title``. Placeholders use ``str.format`` syntax. English falls
back to German per key, so a missing translation degrades gracefully instead of failing.

Examples of dates in usage hints are never written into the texts (a fixed "12.01.2027"
would soon be refused as past by the very command it explains): ``{example_date}``,
``{example_date_2}``, ``{example_end}`` and ``{example_period}`` are filled in from
today's date when the caller does not give them.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

TEXTS_DIR = Path(__file__).parent
LANGUAGES = ("de", "en")
FALLBACK = "de"


def _flatten(prefix: str, table: Mapping[str, Any], out: dict[str, str]) -> None:
    for key, value in table.items():
        full = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            _flatten(full, value, out)
        elif isinstance(value, str):
            out[full] = value
        else:
            raise TypeError(f"{full}: Texte müssen Zeichenketten sein")


@cache
def load_language(lang: str) -> dict[str, str]:
    texts: dict[str, str] = {}
    folder = TEXTS_DIR / lang
    for file in sorted(folder.glob("*.toml")):
        with file.open("rb") as handle:
            _flatten(file.stem, tomllib.load(handle), texts)
    return texts


EXAMPLE_ZONE = ZoneInfo("Europe/Berlin")


def example_day(today: date | None = None) -> date:
    """A plausible date for examples: the first Tuesday at least four weeks ahead."""
    today = today or datetime.now(EXAMPLE_ZONE).date()
    day = today + timedelta(days=28)
    return day + timedelta(days=(1 - day.weekday()) % 7)


def _end_of_half_year(today: date) -> str:
    """The last day of the month six months on: an end for a series."""
    month = today.month + 6
    first_after = date(today.year + (month - 1) // 12, (month - 1) % 12 + 1, 1)
    first_after = (first_after + timedelta(days=32)).replace(day=1)
    return f"{first_after - timedelta(days=1):%d.%m.%Y}"


def _last_month(today: date) -> str:
    last = today.replace(day=1) - timedelta(days=1)
    return f"{last.replace(day=1):%d.%m.%Y}-{last:%d.%m.%Y}"


_EXAMPLES: dict[str, Callable[[date], str]] = {
    "example_date": lambda today: f"{example_day(today):%d.%m.%Y}",
    "example_date_2": lambda today: f"{example_day(today) + timedelta(days=7):%d.%m.%Y}",
    "example_period": _last_month,
    "example_end": _end_of_half_year,
}
#: Placeholders any text may use without the caller giving a value.
EXAMPLE_PLACEHOLDERS = frozenset(_EXAMPLES)


class _SafeFormatter(string.Formatter):
    """Formats catalogue texts; values are inserted as given, never re-interpreted."""

    def get_value(self, key: int | str, args: Any, kwargs: Any) -> Any:
        if isinstance(key, str):
            if key not in kwargs and key in _EXAMPLES:
                return _EXAMPLES[key](datetime.now(EXAMPLE_ZONE).date())
            return kwargs[key]
        return args[key]


_FORMATTER = _SafeFormatter()


class Catalogue:
    """Looks up texts for one language, with German as the fallback."""

    def __init__(self, lang: str = FALLBACK) -> None:
        if lang not in LANGUAGES:
            raise ValueError(f"unknown language {lang!r}")
        self.lang = lang
        self._texts = load_language(lang)
        self._fallback = load_language(FALLBACK)

    def has(self, key: str) -> bool:
        return key in self._texts or key in self._fallback

    def raw(self, key: str) -> str:
        try:
            return self._texts[key] if key in self._texts else self._fallback[key]
        except KeyError:
            raise KeyError(f"Text {key!r} fehlt im Katalog") from None

    def __call__(self, key: str, /, **params: Any) -> str:
        """The text ``key`` with ``params`` filled in. With ``count=1`` a variant
        ``<key>_one`` is used where the catalogue has one ("1 angemeldete Person" instead
        of "1 angemeldete Personen")."""
        if params.get("count") == 1 and self.has(f"{key}_one"):
            key = f"{key}_one"
        return _FORMATTER.vformat(self.raw(key), (), params)

    def for_language(self, lang: str) -> Catalogue:
        return self if lang == self.lang else Catalogue(lang)
