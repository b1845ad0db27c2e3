"""The FAQ engine's synonym list: the curated file shipped with lotsenbot plus local additions.

The shipped file (``data/synonyms_de.yaml``) holds domain vocabulary of German municipal IT
and digitalisation that general thesauri miss or get wrong ("Funktionspostfach" =
"Teampostfach", "E-Akte" = "DMS"). Coordinators add local words (product names, the local name
of the help desk) in a file of the same format, passed as ``extra``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from lotsenbot.nlp.synonyms import SynonymSet

__all__ = ["default_synonyms", "load_synonyms"]


def default_synonyms() -> SynonymSet:
    """The curated German synonym groups shipped with lotsenbot."""
    text = resources.files("lotsenbot.faq").joinpath("data/synonyms_de.yaml").read_text("utf-8")
    return SynonymSet.from_data(yaml.safe_load(text), source="synonyms_de.yaml")


def load_synonyms(extra: Path | str | None = None) -> SynonymSet:
    """Shipped synonyms, extended by a coordinator's file when one is given."""
    base = default_synonyms()
    if extra is None:
        return base
    return base.merged(SynonymSet.from_yaml(extra))
