"""The message catalogue: every text a user sees, in German and English.

Texts live in ``texts/<lang>/<feature>.toml``; a key ``help.title`` in ``core.toml`` is
addressed as ``core.help.title``. Placeholders use ``str.format`` syntax. English falls
back to German per key, so a missing translation degrades gracefully instead of failing.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

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


class _SafeFormatter(string.Formatter):
    """Formats catalogue texts; values are inserted as given, never re-interpreted."""

    def get_value(self, key: int | str, args: Any, kwargs: Any) -> Any:
        if isinstance(key, str):
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
        return _FORMATTER.vformat(self.raw(key), (), params)

    def for_language(self, lang: str) -> Catalogue:
        return self if lang == self.lang else Catalogue(lang)
