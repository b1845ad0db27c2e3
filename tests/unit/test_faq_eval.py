"""Regression guard: retrieval quality on the held-out evaluation split.

The floors are the figures of the latest held-out measurement (see
``tests/data/faq_eval/README.md``, ``bench/faq_eval.py`` and ``bench/results/faq_eval.json``),
rounded down a little: held-out measurement 8 (top-1 0.913, top-3 0.974, answer-correct
0.769, out-of-scope none 1.000) and the blind ``fresh`` set's measurement 4 (top-1 0.819, top-3
0.889, answer-correct 0.485). Raising a floor needs a better engine, never edits to the
held-out questions.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lotsenbot.faq.kb import parse_yaml
from lotsenbot.faq.search import FaqIndex

DATA = Path(__file__).resolve().parent.parent / "data" / "faq_eval"


@pytest.fixture(scope="module")
def index() -> FaqIndex:
    result = parse_yaml((DATA / "kb.yaml").read_text("utf-8"))
    assert result.ok, result.errors
    built = FaqIndex()
    built.build(result.entries)
    return built


@pytest.fixture(scope="module")
def heldout(index: FaqIndex) -> dict[str, float]:
    return figures(index, "heldout")


@pytest.fixture(scope="module")
def fresh(index: FaqIndex) -> dict[str, float]:
    return figures(index, "fresh")


def figures(index: FaqIndex, split: str) -> dict[str, float]:
    queries = yaml.safe_load((DATA / f"{split}.yaml").read_text("utf-8"))
    inscope = [q for q in queries if q["id"]]
    oos = [q for q in queries if not q["id"]]
    top1 = top3 = answer_correct = wrong_answer = 0
    for item in inscope:
        found = index.search(item["q"], limit=3)
        ids = [entry_id for entry_id, _ in found.results]
        is_top = bool(ids) and ids[0] == item["id"]
        top1 += is_top
        top3 += item["id"] in ids
        answer_correct += found.decision == "answer" and is_top
        wrong_answer += found.decision == "answer" and not is_top
    none = sum(index.search(item["q"]).decision == "none" for item in oos)
    return {
        "n_in": len(inscope),
        "n_out": len(oos),
        "top1": top1 / len(inscope),
        "top3": top3 / len(inscope),
        "answer_correct": answer_correct / len(inscope),
        "wrong_answer": wrong_answer / len(inscope),
        "oos_none": none / len(oos),
    }


def test_evaluation_set_has_the_required_size(heldout: dict[str, float]) -> None:
    dev = yaml.safe_load((DATA / "dev.yaml").read_text("utf-8"))
    assert heldout["n_in"] + sum(1 for q in dev if q["id"]) >= 200
    assert heldout["n_out"] + sum(1 for q in dev if not q["id"]) >= 40
    assert len(parse_yaml((DATA / "kb.yaml").read_text("utf-8")).entries) >= 50


def test_heldout_ranking_quality(heldout: dict[str, float]) -> None:
    assert heldout["top1"] >= 0.905
    assert heldout["top3"] >= 0.97


def test_heldout_decisions(heldout: dict[str, float]) -> None:
    assert heldout["answer_correct"] >= 0.76
    assert heldout["wrong_answer"] <= 0.02
    assert heldout["oos_none"] >= 0.95


def test_fresh_figures_do_not_regress(fresh: dict[str, float]) -> None:
    assert fresh["top1"] >= 0.81
    assert fresh["top3"] >= 0.88
    assert fresh["answer_correct"] >= 0.47
    assert fresh["wrong_answer"] <= 0.01
    assert fresh["oos_none"] >= 0.86


@pytest.mark.parametrize("split", ["heldout", "fresh", "all"])
@pytest.mark.parametrize("option", ["--show-errors", "--show-misses"])
def test_error_listing_refuses_the_heldout_splits(split: str, option: str) -> None:
    # Individual held-out errors must never be looked at (that would make held-out dev).
    bench = DATA.parents[2] / "bench" / "faq_eval.py"
    done = subprocess.run(
        [sys.executable, str(bench), "--split", split, option, "--no-write"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 2
    assert "tuning splits only" in done.stderr
    assert "ERR" not in done.stdout and "MISS" not in done.stdout


@pytest.mark.parametrize("split", ["dev", "tune", "heldout", "fresh"])
def test_every_question_names_an_entry_of_the_knowledge_base(split: str) -> None:
    """Data check only (no figures): a typo in an id would silently count as a miss."""
    ids = {entry.id for entry in parse_yaml((DATA / "kb.yaml").read_text("utf-8")).entries}
    queries = yaml.safe_load((DATA / f"{split}.yaml").read_text("utf-8"))
    assert {q["id"] for q in queries if q["id"]} <= ids
    assert all(isinstance(q["q"], str) and q["q"].strip() for q in queries)


def test_tuning_figures_do_not_regress(index: FaqIndex) -> None:
    """``tune`` is a tuning split (its errors were read), so these floors guard against a change
    that undoes the vocabulary taken from it; they say nothing about unseen questions."""
    tune = figures(index, "tune")
    assert tune["top1"] >= 0.74
    assert tune["top3"] >= 0.84
    assert tune["answer_correct"] >= 0.33
    assert tune["wrong_answer"] <= 0.01
    assert tune["oos_none"] >= 0.97
