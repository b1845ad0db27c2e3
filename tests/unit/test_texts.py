"""The message catalogue: German and English stay in step, placeholders match, texts format."""

from __future__ import annotations

import re
import string
import tomllib
from datetime import date, datetime, timedelta

import pytest

from lotsenbot.texts import (
    EXAMPLE_ZONE,
    FALLBACK,
    LANGUAGES,
    TEXTS_DIR,
    Catalogue,
    example_day,
    load_language,
)


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_every_language_has_the_same_files() -> None:
    files = {lang: sorted(p.name for p in (TEXTS_DIR / lang).glob("*.toml")) for lang in LANGUAGES}
    assert files["de"], "no German catalogue found"
    for lang in LANGUAGES:
        assert files[lang] == files[FALLBACK], lang


def test_de_and_en_have_the_same_keys() -> None:
    de, en = load_language("de"), load_language("en")
    assert sorted(set(de) - set(en)) == [], "nur auf Deutsch"
    assert sorted(set(en) - set(de)) == [], "only in English"


def test_placeholders_are_the_same_in_every_language() -> None:
    de, en = load_language("de"), load_language("en")
    differing = {
        key: (placeholders(de[key]), placeholders(en[key]))
        for key in de.keys() & en.keys()
        if placeholders(de[key]) != placeholders(en[key])
    }
    assert differing == {}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_text_formats_with_its_own_placeholders(lang: str) -> None:
    catalogue = Catalogue(lang)
    for key, text in load_language(lang).items():
        names = placeholders(text)
        assert all(name and name.isidentifier() for name in names), (key, names)
        rendered = catalogue(key, **{name: f"<{name}>" for name in names})
        assert rendered.strip(), key


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_feature_with_commands_has_a_title(lang: str) -> None:
    """The generated help heads each feature's commands with ``<feature>.title``."""
    package = TEXTS_DIR.parent
    for file in sorted((TEXTS_DIR / lang).glob("*.toml")):
        if file.stem != "core" and not (package / file.stem / "commands.py").exists():
            continue  # no chat commands (yet), so the help never shows this heading
        with file.open("rb") as handle:
            table = tomllib.load(handle)
        assert isinstance(table.get("title"), str) and table["title"].strip(), file.name


def test_no_text_is_empty_or_padded() -> None:
    for lang in LANGUAGES:
        for key, text in load_language(lang).items():
            assert text.strip(), (lang, key)
            assert text == text.strip() or text.endswith("\n"), (lang, key)


def test_lookup_formats_and_inserts_values_literally() -> None:
    catalogue = Catalogue("de")
    text = catalogue("core.error.unknown_command", command="{prefix}x", prefix="!")
    assert "„{prefix}x“" in text  # a value is never formatted a second time
    assert "`!hilfe`" in text
    english = Catalogue("en")("core.error.bad_number", value="zwölf")
    assert "zwölf" in english
    assert english != Catalogue("de")("core.error.bad_number", value="zwölf")


def test_missing_placeholder_value_is_an_error() -> None:
    with pytest.raises(KeyError):
        Catalogue("de")("core.error.too_long")


def test_unknown_key_and_language() -> None:
    catalogue = Catalogue("en")
    assert catalogue.has("core.help.title")
    assert not catalogue.has("core.gibt_es_nicht")
    with pytest.raises(KeyError, match=r"core\.gibt_es_nicht"):
        catalogue.raw("core.gibt_es_nicht")
    with pytest.raises(ValueError):
        Catalogue("fr")
    assert catalogue.for_language("en") is catalogue
    assert catalogue.for_language("de").lang == "de"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_no_text_contains_a_fixed_date(lang: str) -> None:
    """A fixed example date ("12.01.2027") would soon be refused as past by the very command
    it explains; examples use {example_date} and its siblings instead."""
    fixed = re.compile(r"\b\d{1,2}\.\d{1,2}\.\d{4}\b")
    found = {key: text for key, text in load_language(lang).items() if fixed.search(text)}
    assert found == {}


def test_example_dates_follow_today() -> None:
    for today in (date(2026, 11, 29), date(2026, 12, 31), date(2027, 8, 31), date(2028, 2, 1)):
        day = example_day(today)
        assert day.weekday() == 1 and 28 <= (day - today).days < 35
    catalogue = Catalogue("de")
    text = catalogue("tickets.usage.abwesend", prefix="!")
    shown = datetime.strptime(re.findall(r"\d{2}\.\d{2}\.\d{4}", text)[0], "%d.%m.%Y").date()
    today = datetime.now(EXAMPLE_ZONE).date()
    near = {example_day(today + timedelta(days=d)) for d in (-1, 0, 1)}  # across midnight
    assert shown in near
    # A caller's own value wins.
    assert "01.02.2030" in catalogue(
        "tickets.usage.abwesend", prefix="!", example_date="01.02.2030"
    )
    period = catalogue("privacy.usage.bericht")
    months = set()
    for day in (today - timedelta(days=1), today, today + timedelta(days=1)):
        last_day = day.replace(day=1) - timedelta(days=1)
        months.add(f"{last_day.replace(day=1):%d.%m.%Y}-{last_day:%d.%m.%Y}")
    assert any(month in period for month in months)


def test_a_count_of_one_takes_the_singular_variant() -> None:
    catalogue = Catalogue("de")
    assert catalogue("meetups.audience.people", count=1) == "Die Ankündigung geht an 1 Person."
    assert catalogue("meetups.audience.people", count=2) == "Die Ankündigung geht an 2 Personen."
    assert catalogue("meetups.told.people", count=1, parts="1 angemeldet") == (
        "Informiert: 1 Person (1 angemeldet)."
    )
    for key in ("faq.suggest.hint", "faq.suggest.hint_group", "faq.suggest.out_of_range"):
        assert "1 bis 1" not in catalogue(key, count=1, prefix="!"), key  # one suggestion
    assert "Anfragen Nr. 1, 3 brauchen" in catalogue("privacy.kept.open_ticket", numbers="1, 3",
                                                     count=2)  # fmt: skip
    # FAQ counts: "1 offene Frage", not "1 offene Frage(n)".
    assert catalogue("faq.learn.resolved", count=1) == "1 offene Frage als erledigt markiert."
    assert catalogue("faq.learn.resolved", count=3) == "3 offene Fragen als erledigt markiert."
    assert "einen Fehler" in catalogue("faq.form.invalid", count=1, problems="- x")
    assert "2 Fehler" in catalogue("faq.form.invalid", count=2, problems="- x\n- y")
    english = Catalogue("en")
    assert english("faq.import.summary", count=1).startswith("1 error found")
    assert english("faq.learn.resolved", count=1).startswith("1 open question marked")
    assert "1 Datensatz" in catalogue("privacy.audit.purged", count=1)
    # Every singular variant has its plural base text.
    for lang in LANGUAGES:
        texts = load_language(lang)
        assert all(key.removesuffix("_one") in texts for key in texts if key.endswith("_one"))


@pytest.mark.parametrize("lang", LANGUAGES)
def test_no_text_puts_a_plural_ending_in_brackets(lang: str) -> None:
    """ "1 offene Frage(n)" reads like a form letter: texts with a count have a singular
    variant (``<key>_one``) instead."""
    bracketed = re.compile(r"\w\((?:n|s|en|e|er)\)")
    found = {key: text for key, text in load_language(lang).items() if bracketed.search(text)}
    assert found == {}
