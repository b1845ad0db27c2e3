"""Every error code the meetup logic raises has a text in both languages, with the same
placeholders as the parameters it is raised with."""

from __future__ import annotations

import ast
import string
from pathlib import Path

import pytest

import lotsenbot.meetups
from lotsenbot.texts import EXAMPLE_PLACEHOLDERS, load_language

PACKAGE = Path(lotsenbot.meetups.__file__).parent


def raised_codes() -> dict[str, set[str]]:
    """code -> keyword names, from every ``MeetupError("meetups.…", k=…)`` in the package."""
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "MeetupError"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                keywords = {kw.arg for kw in node.keywords if kw.arg}
                previous = found.setdefault(node.args[0].value, keywords)
                assert previous == keywords, f"{node.args[0].value}: parameters differ"
    return found


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_scan_finds_the_codes() -> None:
    codes = raised_codes()
    assert "meetups.date.past" in codes and codes["meetups.date.past"] == {"when", "example"}
    assert len(codes) >= 20


@pytest.mark.parametrize("lang", ["de", "en"])
def test_every_code_has_a_text_with_matching_placeholders(lang: str) -> None:
    texts = load_language(lang)
    for code, params in raised_codes().items():
        assert code in texts, f"{lang}: {code} fehlt"
        # Error replies always get the command prefix; dates in examples are filled in.
        allowed = params | {"prefix"} | EXAMPLE_PLACEHOLDERS
        assert placeholders(texts[code]) <= allowed, f"{lang}: {code} uses unknown placeholders"


def test_languages_have_the_same_keys_and_placeholders() -> None:
    de = {k: v for k, v in load_language("de").items() if k.startswith("meetups.")}
    en = {k: v for k, v in load_language("en").items() if k.startswith("meetups.")}
    assert de.keys() == en.keys()
    for key in de:
        assert placeholders(de[key]) == placeholders(en[key]), key
