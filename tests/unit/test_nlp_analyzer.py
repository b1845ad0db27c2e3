"""Compounds, synonyms, typo repair and the optional thesaurus of lotsenbot.nlp."""

from __future__ import annotations

from pathlib import Path

from lotsenbot.nlp import (
    Analyzer,
    CompoundSplitter,
    MythesThesaurus,
    SynonymSet,
    Vocabulary,
    find_mythes_de,
    stem,
    tokenize,
)


def _vocabulary(*texts: str) -> Vocabulary:
    vocabulary = Vocabulary()
    for text in texts:
        vocabulary.add(tokenize(text))
    return vocabulary


def test_compound_is_split_into_known_parts_with_linking_element() -> None:
    vocab = _vocabulary("passwort andern anderung", "arbeit platz", "drucker problem")
    splitter = CompoundSplitter(vocab)
    assert splitter.split("passwortanderung") == ["passwort", "anderung"]
    assert splitter.split("arbeitsplatz") == ["arbeit", "platz"]
    assert splitter.split("druckerproblem") == ["drucker", "problem"]


def test_frequent_whole_word_is_not_split() -> None:
    vocab = _vocabulary("passwort passwort passwort", "pass wort")
    assert CompoundSplitter(vocab).split("passwort") == ["passwort"]


def test_unknown_modifier_with_known_head_is_split_only_for_unknown_words() -> None:
    vocab = _vocabulary("drucker drucker", "meister")
    splitter = CompoundSplitter(vocab)
    assert splitter.split("farblaserdrucker") == ["farblaser", "drucker"]
    # The grammatical head must be known: "Bürgermeister" must not become "burger" + ?.
    assert splitter.split("burgermeisterei") == ["burgermeisterei"]


def test_a_function_word_is_never_the_head_of_a_compound() -> None:
    # "aus" is known (a separable prefix in "ausdrucken"), but "Rathaus" is not "rath" + "aus".
    vocab = _vocabulary("aus druck ausdruck", "rat system")
    splitter = CompoundSplitter(vocab)
    assert splitter.split("rathaus") == ["rathaus"]
    assert splitter.split("rathaussystem") == ["rathaus", "system"]
    assert splitter.split("ausdrucksystem") == ["ausdruck", "system"]


def test_an_unknown_modifier_takes_the_longest_known_rest() -> None:
    # "fall" is far more common than "ausfall", but the head of "Systemausfall" is "Ausfall".
    vocab = _vocabulary("fall fall fall fall", "ausfall")
    assert CompoundSplitter(vocab).split("systemausfall") == ["system", "ausfall"]


def test_an_unknown_modifier_is_a_last_resort() -> None:
    vocab = _vocabulary("system system", "ausfall", "fall fall fall fall")
    assert CompoundSplitter(vocab).split("systemausfall") == ["system", "ausfall"]


def test_split_cache_follows_vocabulary_changes() -> None:
    vocab = _vocabulary("drucker")
    splitter = CompoundSplitter(vocab)
    assert splitter.split("druckerproblem") == ["druckerproblem"]
    vocab.add(["problem"])
    assert splitter.split("druckerproblem") == ["drucker", "problem"]
    vocab.remove(["problem"])
    assert splitter.split("druckerproblem") == ["druckerproblem"]


def test_analyzer_terms_include_compound_parts_and_whole_stem() -> None:
    analyzer = Analyzer(vocabulary=_vocabulary("passwort anderung"))
    terms = analyzer.terms("Passwortänderung")
    assert stem("passwort") in terms
    assert stem("anderung") in terms
    assert stem("passwortanderung") in terms


def test_hyphenated_words_yield_parts() -> None:
    terms = Analyzer().terms("E-Akte")
    assert stem("akte") in terms and stem("eakte") in terms


def test_single_word_synonyms_meet_in_a_concept() -> None:
    synonyms = SynonymSet.from_groups([["passwort", "kennwort", "pw"]])
    analyzer = Analyzer(synonyms=synonyms)
    concept = "=passwort"
    assert concept in analyzer.terms("Kennwort vergessen")
    assert concept in analyzer.terms("pw vergessen")
    assert concept in analyzer.terms("Passwörter")


def test_phrase_synonyms_match_in_any_order() -> None:
    synonyms = SynonymSet.from_groups([["homeoffice", "von zu hause arbeiten"]])
    analyzer = Analyzer(synonyms=synonyms)
    assert "=homeoffice" in analyzer.terms("Darf ich von zu Hause arbeiten?")
    assert "=homeoffice" in analyzer.terms("ich arbeite morgen von zu hause")
    assert "=homeoffice" not in analyzer.terms("ich arbeite im Rathaus")


def test_hyphenated_synonym_also_matches_when_typed_apart() -> None:
    synonyms = SynonymSet.from_groups([["vpn", "remote-zugang"]])
    analyzer = Analyzer(synonyms=synonyms)
    assert "=vpn" in analyzer.terms("Remote Zugang geht nicht")
    assert "=vpn" in analyzer.terms("Remote-Zugang")


def test_synonyms_from_yaml_and_merge(tmp_path: Path) -> None:
    path = tmp_path / "local.yaml"
    path.write_text("- [fachverfahren, okewo]\n- name: rathaus\n  terms: [stadthaus]\n", "utf-8")
    local = SynonymSet.from_yaml(path)
    merged = SynonymSet.from_groups([["passwort", "kennwort"]]).merged(local)
    analyzer = Analyzer(synonyms=merged)
    assert "=fachverfahren" in analyzer.terms("OKEWO")
    assert "=rathaus" in analyzer.terms("Stadthaus")
    assert "=passwort" in analyzer.terms("Kennwort")


def test_typo_repair_only_for_queries_and_only_to_known_words() -> None:
    analyzer = Analyzer(vocabulary=_vocabulary("drucker einrichten", "vergessen vergeben"))
    assert stem("drucker") in analyzer.terms("druker", query=True)
    assert stem("drucker") not in analyzer.terms("druker")
    # A dropped letter beats a replaced one at the same edit distance.
    assert stem("vergessen") in analyzer.terms("vergesen", query=True)
    assert stem("vergeben") not in analyzer.terms("vergesen", query=True)


def test_short_and_distant_words_are_not_repaired() -> None:
    analyzer = Analyzer(vocabulary=_vocabulary("zeigt drucker"))
    assert analyzer.terms("zeit", query=True) == [stem("zeit")]
    assert analyzer.terms("kantine", query=True) == [stem("kantine")]


def test_typo_repair_weight_is_below_synonym_weight() -> None:
    synonyms = SynonymSet.from_groups([["drucker", "printer"]])
    analyzer = Analyzer(synonyms=synonyms, vocabulary=_vocabulary("drucker"))
    repaired = analyzer.weighted_terms("druker", query=True)
    synonym = analyzer.weighted_terms("printer", query=True)
    assert 0 < repaired[stem("drucker")] < synonym["=drucker"] < 1


def _mythes(tmp_path: Path, entries: dict[str, str] | None = None) -> MythesThesaurus | None:
    entries = entries or {"kennwort": "Passwort|Losung (geh.)|Zugangscode", "wetter": "Witterung"}
    dat = "UTF-8\n" + "".join(f"{word}|1\n-|{senses}\n" for word, senses in entries.items())
    data = dat.encode("utf-8")
    idx_lines = ["UTF-8", str(len(entries))]
    for word in entries:
        idx_lines.append(f"{word}|{data.index(f'{word}|'.encode())}")
    (tmp_path / "th_de_DE_v2.dat").write_bytes(data)
    (tmp_path / "th_de_DE_v2.idx").write_text("\n".join(idx_lines) + "\n", "utf-8")
    return find_mythes_de(tmp_path)


def test_thesaurus_reads_mythes_files(tmp_path: Path) -> None:
    thesaurus = _mythes(tmp_path)
    assert thesaurus is not None and len(thesaurus) == 2
    assert thesaurus.lookup("kennwort") == ("passwort", "losung", "zugangscode")
    assert thesaurus.lookup("unbekannt") == ()


def test_thesaurus_is_optional(tmp_path: Path) -> None:
    assert find_mythes_de(tmp_path / "missing") is None


def test_thesaurus_expands_only_unknown_query_words_to_known_words(tmp_path: Path) -> None:
    analyzer = Analyzer(vocabulary=_vocabulary("passwort andern"), thesaurus=_mythes(tmp_path))
    weighted = analyzer.weighted_terms("kennwort", query=True)
    assert weighted[stem("passwort")] == 0.6
    assert stem("zugangscode") not in weighted  # not in the vocabulary
    assert stem("passwort") not in analyzer.terms("kennwort")  # documents are not expanded


def test_thesaurus_ignores_function_words_and_very_short_words(tmp_path: Path) -> None:
    # OpenThesaurus's broad senses of "abgeben" include "machen", "tun", "man" and the like.
    thesaurus = _mythes(tmp_path, {"abgeben": "Amt|man|machen|übergeben"})
    analyzer = Analyzer(vocabulary=_vocabulary("amt man machen übergeben"), thesaurus=thesaurus)
    weighted = analyzer.weighted_terms("abgeben", query=True)
    assert stem("ubergeben") in weighted
    assert stem("amt") not in weighted and stem("man") not in weighted
    assert stem("machen") not in weighted  # a stopword


def test_action_noun_matches_the_verb_in_both_directions() -> None:
    analyzer = Analyzer()
    noun = analyzer.weighted_terms("Meldung")
    verb = analyzer.weighted_terms("melden")
    assert stem("melden") in noun and noun[stem("melden")] < 1.0
    assert set(verb) & set(noun)


def test_action_noun_inside_a_compound_meets_the_verb() -> None:
    vocabulary = _vocabulary("Passwort ändern", "Passwort", "Änderung")
    analyzer = Analyzer(vocabulary=vocabulary)
    terms = analyzer.weighted_terms("Passwortänderung")
    assert stem("andern") in terms and stem("passwort") in terms


def test_word_terms_keep_function_words_in_order_with_concepts() -> None:
    synonyms = SynonymSet.from_groups([["passwort", "kennwort"]])
    analyzer = Analyzer(synonyms=synonyms, vocabulary=_vocabulary("Passwortänderung"))
    words = analyzer.word_terms("Mein Kennwort geht nicht mehr!")
    assert [stem("mein") in w for w in words] == [True, False, False, False, False]
    assert words[1] == frozenset({stem("kennwort"), "=passwort"})
    assert words[3:] == [frozenset({stem("nicht")}), frozenset({stem("mehr")})]
    # Compounds stay whole: a pair only counts when it is written alike.
    assert analyzer.word_terms("Passwortänderung") == [frozenset({stem("passwortanderung")})]
