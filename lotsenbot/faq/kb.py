"""FAQ knowledge-base files: the entry model, validated import (YAML, CSV) and export.

Import is all-or-nothing. A coordinator who uploads a file with three mistakes must learn about
all three at once, with the line to fix, and the bot must never serve half a knowledge base.
So :func:`parse_yaml` and :func:`parse_csv` first collect every problem and return either all
entries or only the problems (:class:`ImportResult`). Problems are data (:class:`ImportIssue`:
a code, a line and parameters), rendered into German or English by :func:`render_issue` from
the message catalogue (``faq.import.*``), so that tests and other tools never parse prose.

Line numbers: for YAML the line where the entry (or the offending field) starts, taken from the
YAML node tree; for CSV the physical line where the row starts (the header is line 1), which is
what a spreadsheet shows as row number.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from lotsenbot.texts import Catalogue

__all__ = [
    "COLUMNS",
    "FaqEntry",
    "ImportIssue",
    "ImportResult",
    "RawRecord",
    "dump_csv",
    "dump_yaml",
    "load_file",
    "load_starter_kb",
    "parse_csv",
    "parse_yaml",
    "render_issue",
    "render_issues",
    "validate_records",
]

COLUMNS: tuple[str, ...] = (
    "id",
    "category",
    "department",
    "question",
    "alternatives",
    "answer",
    "tags",
)
"""Fields of an entry, in file order; also the CSV columns."""

_REQUIRED = ("id", "category", "question", "answer")
_LISTS = ("alternatives", "tags")
_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_ID_RE = re.compile(_ID_PATTERN)
LIST_SEPARATOR = ";"
"""Separator of list items inside one CSV cell."""


class FaqEntry(BaseModel):
    """One question with its answer. ``answer`` is Markdown; placeholders like
    ``<INTRANET-LINK>`` are left for the municipality to fill in."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str = Field(pattern=_ID_PATTERN)
    category: str = Field(min_length=1)
    department: str | None = None
    question: str = Field(min_length=1)
    alternatives: list[str] = Field(default_factory=list)
    answer: str = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)

    @field_validator("alternatives", "tags")
    @classmethod
    def _drop_blank(cls, items: list[str]) -> list[str]:
        return [item.strip() for item in items if item and item.strip()]

    @field_validator("department")
    @classmethod
    def _blank_department(cls, value: str | None) -> str | None:
        return value or None


@dataclass(frozen=True, slots=True)
class ImportIssue:
    """One problem found while importing; ``code`` is a key below ``faq.import``."""

    code: str
    line: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ImportResult:
    """Either every entry of the file (``errors`` empty) or every problem (``entries`` empty)."""

    entries: list[FaqEntry] = field(default_factory=list)
    errors: list[ImportIssue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the file can be imported."""
        return not self.errors


@dataclass(slots=True)
class RawRecord:
    """A raw entry as read from a file, with where its fields start (for other importers)."""

    line: int
    data: Any
    field_lines: dict[str, int] = field(default_factory=dict)
    duplicate_keys: list[tuple[str, int]] = field(default_factory=list)


# -- validation --------------------------------------------------------------------------------


def validate_records(
    records: Iterable[RawRecord], known_departments: Collection[str] | None = None
) -> ImportResult:
    """Validate raw records; return all entries or all problems, never a mix."""
    errors: list[ImportIssue] = []
    entries: list[FaqEntry] = []
    first_seen: dict[str, int] = {}
    count = 0
    for record in records:
        count += 1
        entry_errors = _validate_one(record, known_departments, first_seen)
        if entry_errors:
            errors.extend(entry_errors)
        else:
            entries.append(FaqEntry.model_validate(record.data))
    if count == 0 and not errors:
        errors.append(ImportIssue("empty"))
    return ImportResult(errors=errors) if errors else ImportResult(entries=entries)


def _validate_one(
    record: RawRecord,
    known_departments: Collection[str] | None,
    first_seen: dict[str, int],
) -> list[ImportIssue]:
    data = record.data
    if not isinstance(data, Mapping):
        return [ImportIssue("entry_not_mapping", record.line)]
    raw_id = data.get("id")
    shown_id = str(raw_id).strip() if raw_id not in (None, "") else "?"

    def at(name: str) -> int:
        return record.field_lines.get(name, record.line)

    errors = [
        ImportIssue("duplicate_key", line, {"field": key, "id": shown_id})
        for key, line in record.duplicate_keys
    ]
    for key in data:
        if key not in COLUMNS:
            errors.append(
                ImportIssue(
                    "unknown_field",
                    at(str(key)),
                    {"field": key, "id": shown_id, "allowed": ", ".join(COLUMNS)},
                )
            )
    for name in _REQUIRED:
        value = data.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if name == "answer":
                errors.append(ImportIssue("missing_answer", at(name), {"id": shown_id}))
            elif name in data:
                errors.append(ImportIssue("empty_field", at(name), {"id": shown_id, "field": name}))
            else:
                errors.append(
                    ImportIssue("missing_field", record.line, {"id": shown_id, "field": name})
                )
        elif not isinstance(value, str):
            errors.append(ImportIssue("expected_text", at(name), {"id": shown_id, "field": name}))
    department = data.get("department")
    if department is not None and not isinstance(department, str):
        errors.append(
            ImportIssue("expected_text", at("department"), {"id": shown_id, "field": "department"})
        )
    for name in _LISTS:
        value = data.get(name)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(item, str) for item in value)
        ):
            errors.append(ImportIssue("expected_list", at(name), {"id": shown_id, "field": name}))
    if isinstance(raw_id, str) and raw_id.strip():
        entry_id = raw_id.strip()
        if not _ID_RE.match(entry_id):
            errors.append(ImportIssue("invalid_id", at("id"), {"id": entry_id}))
        elif entry_id in first_seen:
            errors.append(
                ImportIssue(
                    "duplicate_id",
                    at("id"),
                    {"id": entry_id, "first_line": first_seen[entry_id]},
                )
            )
        else:
            first_seen[entry_id] = at("id")
    if (
        known_departments is not None
        and isinstance(department, str)
        and department.strip()
        and department.strip() not in known_departments
    ):
        errors.append(
            ImportIssue(
                "unknown_department",
                at("department"),
                {
                    "id": shown_id,
                    "department": department.strip(),
                    "known": ", ".join(sorted(known_departments)) or "–",
                },
            )
        )
    return errors


# -- YAML ----------------------------------------------------------------------------------------


def parse_yaml(text: str, known_departments: Collection[str] | None = None) -> ImportResult:
    """Validate a YAML knowledge base (a list of entry mappings)."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return ImportResult(errors=[ImportIssue("empty")])
        if not isinstance(root, yaml.SequenceNode):
            return ImportResult(errors=[ImportIssue("not_a_list", root.start_mark.line + 1)])
        records = [_yaml_record(loader, node) for node in root.value]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "unbekannter Fehler"
        return ImportResult(errors=[ImportIssue("yaml_syntax", line, {"problem": problem})])
    except yaml.YAMLError as exc:
        return ImportResult(errors=[ImportIssue("yaml_syntax", None, {"problem": str(exc)})])
    finally:
        loader.dispose()
    return validate_records(records, known_departments)


def _yaml_record(loader: yaml.SafeLoader, node: yaml.Node) -> RawRecord:
    record = RawRecord(line=node.start_mark.line + 1, data=None)
    if isinstance(node, yaml.MappingNode):
        data: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in data:
                record.duplicate_keys.append((str(key), line))
            data[key] = loader.construct_object(value_node, deep=True)
            record.field_lines[str(key)] = line
        record.data = data
    else:
        record.data = loader.construct_object(node, deep=True)
    return record


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (answers) as readable ``|`` blocks."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_representer)


def dump_yaml(entries: Iterable[FaqEntry]) -> str:
    """Write entries as canonical YAML (fields in :data:`COLUMNS` order)."""
    data = []
    for entry in entries:
        item = entry.model_dump()
        if item["department"] is None:
            del item["department"]
        answer = item["answer"]
        item["answer"] = answer if answer.endswith("\n") or "\n" not in answer else answer + "\n"
        data.append({key: item[key] for key in COLUMNS if key in item})
    return yaml.dump(data, Dumper=_BlockDumper, allow_unicode=True, sort_keys=False, width=100)


# -- CSV -----------------------------------------------------------------------------------------


def parse_csv(text: str, known_departments: Collection[str] | None = None) -> ImportResult:
    """Validate a CSV knowledge base with a header row of :data:`COLUMNS`.

    Comma and semicolon delimiters are both accepted (German Excel writes semicolons); list
    cells separate their items with ``;`` and must then be quoted in a semicolon file.
    """
    text = text.removeprefix("\ufeff")
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        return ImportResult(errors=[ImportIssue("csv_syntax", 1, {"problem": str(exc)})])
    if header is None:
        return ImportResult(errors=[ImportIssue("empty")])
    columns = [name.strip().lower() for name in header]
    errors: list[ImportIssue] = []
    for name in columns:
        if name not in COLUMNS:
            errors.append(
                ImportIssue(
                    "csv_unknown_column", 1, {"column": name, "allowed": ", ".join(COLUMNS)}
                )
            )
    for name in sorted({n for n in columns if columns.count(n) > 1}):
        errors.append(ImportIssue("csv_duplicate_column", 1, {"column": name}))
    for name in _REQUIRED:
        if name not in columns:
            errors.append(
                ImportIssue(
                    "csv_missing_column", 1, {"column": name, "required": ", ".join(_REQUIRED)}
                )
            )
    if errors:
        return ImportResult(errors=errors)

    records: list[RawRecord] = []
    line = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            return ImportResult(
                errors=[*errors, ImportIssue("csv_syntax", line, {"problem": str(exc)})]
            )
        start, line = line, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(columns):
            params = {"found": len(row), "expected": len(columns), "delimiter": delimiter}
            errors.append(ImportIssue("csv_row_length", start, params))
            continue
        data: dict[str, Any] = {}
        for name, cell in zip(columns, row, strict=True):
            value = cell.strip()
            if name in _LISTS:
                data[name] = [item.strip() for item in value.split(LIST_SEPARATOR) if item.strip()]
            elif value or name in _REQUIRED:
                data[name] = value
        records.append(RawRecord(line=start, data=data))
    result = validate_records(records, known_departments)
    if errors:
        return ImportResult(errors=sorted([*errors, *result.errors], key=_issue_order))
    return result


def dump_csv(entries: Iterable[FaqEntry]) -> str:
    """Write entries as comma-separated CSV with a header row (lists joined with ``;``)."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for entry in entries:
        writer.writerow(
            [
                entry.id,
                entry.category,
                entry.department or "",
                entry.question,
                f"{LIST_SEPARATOR} ".join(entry.alternatives),
                entry.answer.rstrip("\n"),
                f"{LIST_SEPARATOR} ".join(entry.tags),
            ]
        )
    return buffer.getvalue()


# -- files and rendering -------------------------------------------------------------------------


def load_file(path: Path | str, known_departments: Collection[str] | None = None) -> ImportResult:
    """Read and validate a ``.yaml``/``.yml`` or ``.csv`` file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".csv"):
        return ImportResult(errors=[ImportIssue("unknown_format", None, {"suffix": suffix})])
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return ImportResult(errors=[ImportIssue("not_utf8")])
    except OSError:
        return ImportResult(errors=[ImportIssue("file_unreadable", None, {"file": path.name})])
    if suffix == ".csv":
        return parse_csv(text, known_departments)
    return parse_yaml(text, known_departments)


def load_starter_kb(known_departments: Collection[str] | None = None) -> list[FaqEntry]:
    """The German starter knowledge base shipped with lotsenbot (``faq/data/de.yaml``).

    Raises ``ValueError`` with the rendered problems if the shipped file does not validate,
    which only a broken build can cause.
    """
    text = resources.files("lotsenbot.faq").joinpath("data/de.yaml").read_text("utf-8")
    result = parse_yaml(text, known_departments)
    if not result.ok:
        raise ValueError("\n".join(render_issues(result.errors)))
    return result.entries


def render_issue(issue: ImportIssue, lang: str = "de") -> str:
    """The user-facing text of one problem, prefixed with its line when known."""
    catalogue = Catalogue(lang)
    message = catalogue(f"faq.import.{issue.code}", **issue.params)
    if issue.line is None:
        return message
    return catalogue("faq.import.location", line=issue.line, message=message)


def render_issues(issues: Iterable[ImportIssue], lang: str = "de") -> list[str]:
    """Render every problem, in file order."""
    return [render_issue(issue, lang) for issue in sorted(issues, key=_issue_order)]


def _issue_order(issue: ImportIssue) -> tuple[int, str]:
    return (issue.line or 0, issue.code)
