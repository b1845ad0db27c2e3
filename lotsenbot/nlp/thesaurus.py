"""Optional OpenThesaurus lookups through Debian's ``mythes-de`` files.

OpenThesaurus is large (about 110,000 entries) and general-language: it knows that "Kennwort"
means "Passwort", but also that "Drucker" is a profession. It is therefore used only as a last
resort, for query words the knowledge base does not know at all, and only its synonyms that
the knowledge base does know are kept (with a reduced weight, see the analyzer). Nothing here
is required: :func:`find_mythes_de` returns ``None`` when the package is not installed, and the
rest of the engine works without it.

The MyThes format: ``th_de_DE_v2.idx`` lists ``word|byte offset`` (first line the encoding,
second the number of entries); ``th_de_DE_v2.dat`` holds at that offset ``word|n`` followed by
``n`` meaning lines ``(pos)|synonym|synonym|…`` where synonyms may carry remarks in brackets.
Only the index is read at start-up; meaning lines are read on demand and cached.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left, bisect_right
from functools import lru_cache
from itertools import pairwise
from pathlib import Path

from lotsenbot.nlp.text import normalize

__all__ = ["DEFAULT_MYTHES_DIR", "MythesThesaurus", "find_mythes_de"]

DEFAULT_MYTHES_DIR = Path("/usr/share/mythes")
"""Where Debian's mythes packages install their files."""

_REMARK = re.compile(r"\([^)]*\)")
_NAMES = ("th_de_DE_v2", "th_de_DE", "th_de_AT_v2", "th_de_CH_v2")


class MythesThesaurus:
    """Read-only synonym lookups in a MyThes ``.idx``/``.dat`` pair."""

    def __init__(self, idx_path: Path, dat_path: Path) -> None:
        self._dat_path = dat_path
        with open(idx_path, encoding="latin-1") as handle:
            encoding = handle.readline().strip() or "UTF-8"
        self._encoding = _python_encoding(encoding)
        words: list[str] = []
        offsets = array("q")
        with open(idx_path, encoding=self._encoding, errors="replace") as handle:
            handle.readline()
            handle.readline()
            for line in handle:
                word, _, offset = line.rstrip("\n").rpartition("|")
                if word and offset.isdigit():
                    words.append(normalize(word))
                    offsets.append(int(offset))
        # A sorted word list with the offsets beside it in a typed array: about 12 MB for the
        # 110,000 words of OpenThesaurus, where a dict of lists needed 25 MB. Several words
        # can normalise alike ("Mühle", "Muhle"), so a word may own several offsets.
        order = sorted(range(len(words)), key=words.__getitem__)
        self._words = [words[i] for i in order]
        self._offsets = array("q", (offsets[i] for i in order))
        self._count = len(self._words) and 1 + sum(a != b for a, b in pairwise(self._words))
        self.lookup = lru_cache(maxsize=4096)(self._lookup)

    def __len__(self) -> int:
        return self._count

    def _lookup(self, word: str) -> tuple[str, ...]:
        """Normalised synonyms of a normalised word, without remarks, in file order."""
        first = bisect_left(self._words, word)
        offsets = self._offsets[first : bisect_right(self._words, word, lo=first)]
        if not offsets:
            return ()
        result: dict[str, None] = {}
        with open(self._dat_path, "rb") as handle:
            for offset in offsets:
                handle.seek(offset)
                header = handle.readline().decode(self._encoding, errors="replace")
                _, _, count = header.strip().rpartition("|")
                for _ in range(int(count) if count.isdigit() else 0):
                    line = handle.readline().decode(self._encoding, errors="replace")
                    for synonym in line.strip().split("|")[1:]:
                        cleaned = normalize(_REMARK.sub(" ", synonym))
                        if cleaned and cleaned != word:
                            result[cleaned] = None
        return tuple(result)


def find_mythes_de(directory: Path = DEFAULT_MYTHES_DIR) -> MythesThesaurus | None:
    """Open the German OpenThesaurus from ``directory`` if it is installed, else ``None``."""
    for name in _NAMES:
        idx, dat = directory / f"{name}.idx", directory / f"{name}.dat"
        if idx.is_file() and dat.is_file():
            return MythesThesaurus(idx, dat)
    return None


def _python_encoding(name: str) -> str:
    upper = name.upper().replace("-", "")
    return {"ISO88591": "latin-1", "ISO885915": "iso8859-15", "UTF8": "utf-8"}.get(upper, name)
