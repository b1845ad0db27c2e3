"""The statistics report: period parsing, the Markdown text, and the chart.

The figures come from the features' ``statistics`` hooks (see
:mod:`lotsenbot.core.personal_data`) as plain dictionaries keyed by feature name; a section
is shown only for features that delivered figures. Everything here is pure: no database,
no Matrix, so the report can be tested with constructed figures and a fixed clock.

By default the figures are aggregates per department; per-person figures appear only when
``[privacy] per_person_stats`` is on (agreed with the staff council), and then only in the
text, never in the chart.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from lotsenbot.core.errors import BadArguments
from lotsenbot.core.markdown import escape
from lotsenbot.texts import Catalogue

DEFAULT_DAYS = 30
MAX_DAYS = 3 * 366
TOP_UNANSWERED = 5


@dataclass(frozen=True)
class Period:
    since: datetime  # aware UTC, inclusive
    until: datetime  # aware UTC, exclusive
    first_day: date  # local dates for the heading
    last_day: date


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def rolling(days: int, now: datetime, tz: ZoneInfo) -> Period:
    """The last ``days`` days up to now."""
    since = now - timedelta(days=days)
    return Period(since, now, since.astimezone(tz).date(), now.astimezone(tz).date())


def iso_week_before(now: datetime, tz: ZoneInfo) -> tuple[Period, str]:
    """The complete calendar week (Monday to Sunday, local time) before ``now``, and its
    ISO name ("2026-W48") – what the Monday report covers and its dedup key."""
    today = now.astimezone(tz).date()
    monday = today - timedelta(days=today.weekday() + 7)
    sunday = monday + timedelta(days=6)
    year, week, _ = monday.isocalendar()
    period = Period(_local_midnight(monday, tz), _local_midnight(sunday + timedelta(days=1), tz),
                    monday, sunday)  # fmt: skip
    return period, f"{year}-W{week:02d}"


_DAYS = re.compile(r"^(\d{1,4})\s*(tage?n?|tg|d|days?)$")
_WEEKS = re.compile(r"^(\d{1,3})\s*(wochen?|w|weeks?)$")
_MONTHS = re.compile(r"^(\d{1,2})\s*(monate?n?|months?)$")
_RANGE = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})\s*[-–—]\s*(\d{1,2})\.(\d{1,2})\.(\d{4})$")


def parse_period(text: str, now: datetime, tz: ZoneInfo) -> Period:
    """``""`` (30 days), ``30 Tage``, ``2 Wochen``, ``Woche``, ``Monat``, ``Jahr`` or
    ``TT.MM.JJJJ-TT.MM.JJJJ`` (whole local days, both included)."""
    value = " ".join(text.strip().lower().split())
    if not value:
        return rolling(DEFAULT_DAYS, now, tz)
    named = {"woche": 7, "week": 7, "monat": 30, "month": 30, "quartal": 91, "quarter": 91,
             "jahr": 365, "year": 365}  # fmt: skip
    days: int | None = named.get(value)
    for pattern, factor in ((_DAYS, 1), (_WEEKS, 7), (_MONTHS, 30)):
        match = pattern.match(value)
        if match:
            days = int(match.group(1)) * factor
    if days is not None:
        if not 1 <= days <= MAX_DAYS:
            raise BadArguments("privacy.usage.bericht_range", max_days=MAX_DAYS)
        return rolling(days, now, tz)
    match = _RANGE.match(value)
    if match is None:
        raise BadArguments("privacy.usage.bericht")
    d1, m1, y1, d2, m2, y2 = (int(g) for g in match.groups())
    try:
        first, last = date(y1, m1, d1), date(y2, m2, d2)
    except ValueError:
        raise BadArguments("privacy.usage.bericht") from None
    if last < first or (last - first).days + 1 > MAX_DAYS:
        raise BadArguments("privacy.usage.bericht_range", max_days=MAX_DAYS)
    if not (first.year >= 1900 and last.year <= 9998):  # beyond the calendar's edges
        raise BadArguments("privacy.usage.bericht")
    return Period(_local_midnight(first, tz), _local_midnight(last + timedelta(days=1), tz),
                  first, last)  # fmt: skip


# -- text ----------------------------------------------------------------------------------


def format_duration(seconds: float | None, t: Catalogue) -> str:
    if seconds is None:
        return "–"
    if seconds < 3600:
        return t("privacy.unit.minutes", n=max(1, round(seconds / 60)))
    if seconds < 48 * 3600:
        return t("privacy.unit.hours", n=_decimal(seconds / 3600, t))
    return t("privacy.unit.days", n=_decimal(seconds / 86400, t))


def _decimal(value: float, t: Catalogue) -> str:
    text = f"{value:.1f}"
    return text.replace(".", ",") if t.lang == "de" else text


def _percent(value: float | None, t: Catalogue) -> str:
    return "–" if value is None else t("privacy.unit.percent", n=_decimal(value * 100, t))


def _date(day: date, t: Catalogue) -> str:
    return day.strftime("%d.%m.%Y") if t.lang == "de" else day.isoformat()


def department_label(department: str, names: Mapping[str, str], t: Catalogue) -> str:
    if not department:
        return t("privacy.report.triage")
    return names.get(department, department)


def render_markdown(
    figures: Mapping[str, Mapping[str, Any]],
    period: Period,
    t: Catalogue,
    departments: Mapping[str, str],
    tz: ZoneInfo,
    per_person: bool,
    people: Mapping[str, str] | None = None,
) -> str:
    """The report as Markdown; only sections of features that delivered figures.
    ``people`` are the labels (``PersonNames.labels``) of the people the per-person figures
    name; anyone missing there is shown by Matrix ID."""
    lines = [t("privacy.report.heading", first=_date(period.first_day, t),
               last=_date(period.last_day, t)), ""]  # fmt: skip
    core = figures.get("core")
    if core:
        lines.append(t("privacy.report.core", messages=core.get("messages_handled", 0),
                       people=core.get("active_people", 0)))  # fmt: skip
        if core.get("counted_from"):
            counted = datetime.fromisoformat(str(core["counted_from"]).replace("Z", "+00:00"))
            day = _date(counted.astimezone(tz).date(), t)
            lines.append(t("privacy.report.counted_from", date=day))
        lines.append("")
    tickets = figures.get("tickets")
    if tickets:
        lines += _tickets_section(tickets, t, departments, per_person, people or {})
    faq = figures.get("faq")
    if faq:
        lines += _faq_section(faq, t)
    meetups = figures.get("meetups")
    if meetups:
        lines += _meetups_section(meetups, t, tz)
    announcements = figures.get("announcements")
    if announcements:
        lines += [f"### {t('privacy.report.announcements_title')}",
                  t("privacy.report.announcements", count=announcements.get("sent", 0),
                    recipients=announcements.get("recipients", 0)), ""]  # fmt: skip
    lines.append(t("privacy.report.footer_person" if per_person else "privacy.report.footer"))
    return "\n".join(lines).strip()


def _tickets_section(tickets: Mapping[str, Any], t: Catalogue, names: Mapping[str, str],
                     per_person: bool, people: Mapping[str, str]) -> list[str]:  # fmt: skip
    requests: Mapping[str, int] = tickets.get("requests") or {}
    first: Mapping[str, float | None] = tickets.get("first_answer_median_s") or {}
    done: Mapping[str, float | None] = tickets.get("resolution_median_s") or {}
    open_now: Mapping[str, int] = tickets.get("open_now") or {}
    lines = [f"### {t('privacy.report.tickets_title')}"]
    total = sum(requests.values())
    lines.append(t("privacy.report.tickets_total", count=total,
                   first=format_duration(tickets.get("first_answer_overall_s"), t),
                   resolved=format_duration(tickets.get("resolution_overall_s"), t)))  # fmt: skip
    departments = sorted(set(requests) | set(open_now), key=lambda d: (-requests.get(d, 0), d))
    if departments:
        lines += ["", t("privacy.report.tickets_table_head"), "|---|---:|---:|---:|---:|"]
        for department in departments:
            label = escape(department_label(department, names, t))
            lines.append(
                f"| {label} | {requests.get(department, 0)} | "
                f"{format_duration(first.get(department), t)} | "
                f"{format_duration(done.get(department), t)} | {open_now.get(department, 0)} |"
            )
    by_person: Mapping[str, Mapping[str, int]] = tickets.get("by_pilot") or {}
    if per_person and by_person:
        lines += ["", t("privacy.report.by_pilot_title")]
        for user, counts in sorted(by_person.items()):
            lines.append(t("privacy.report.by_pilot_line", user=people.get(user) or escape(user),
                           answered=counts.get("answered", 0),
                           resolved=counts.get("resolved", 0)))  # fmt: skip
    lines.append("")
    return lines


def _faq_section(faq: Mapping[str, Any], t: Catalogue) -> list[str]:
    lines = [f"### {t('privacy.report.faq_title')}",
             t("privacy.report.faq", questions=faq.get("questions", 0),
               answered=faq.get("answered", 0), suggested=faq.get("suggested", 0),
               rate=_percent(faq.get("hit_rate"), t))]  # fmt: skip
    if faq.get("helpful") or faq.get("not_helpful"):
        lines.append(t("privacy.report.faq_feedback", helpful=faq.get("helpful", 0),
                       not_helpful=faq.get("not_helpful", 0)))  # fmt: skip
    top = faq.get("top_unanswered") or []
    if top:
        lines += ["", t("privacy.report.faq_top")]
        for number, item in enumerate(top[:TOP_UNANSWERED], 1):
            question = " ".join(str(item["question"]).split())
            if len(question) > 160:
                question = question[:159] + "…"
            lines.append(f"{number}. „{escape(question)}“ ({item['count']}×)")
    lines.append("")
    return lines


def _meetups_section(meetups: Mapping[str, Any], t: Catalogue, tz: ZoneInfo) -> list[str]:
    dates = meetups.get("dates") or []
    lines = [f"### {t('privacy.report.meetups_title')}"]
    if not dates and not meetups.get("counted_from"):
        lines.append(t("privacy.report.meetups_none"))
    for item in dates:
        start = datetime.fromisoformat(str(item["start"]).replace("Z", "+00:00")).astimezone(tz)
        lines.append(t("privacy.report.meetup_line", title=escape(str(item["title"])),
                       date=start.strftime("%d.%m.%Y %H:%M"), confirmed=item.get("confirmed", 0),
                       waitlisted=item.get("waitlisted", 0)))  # fmt: skip
    if meetups.get("counted_from"):
        day = _date(date.fromisoformat(str(meetups["counted_from"])), t)
        lines.append(t("privacy.report.meetups_counted_from", date=day))
    lines.append("")
    return lines


# -- chart ---------------------------------------------------------------------------------


def render_chart(
    figures: Mapping[str, Mapping[str, Any]],
    period: Period,
    t: Catalogue,
    departments: Mapping[str, str],
) -> bytes:
    """A PNG with one panel per available section (aggregates only, never per person).

    Uses matplotlib's object API with the Agg canvas directly – no pyplot, no global
    state – so it is safe in a worker thread and needs no display.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels: list[tuple[str, list[str], list[float], str]] = []
    tickets = figures.get("tickets") or {}
    requests: Mapping[str, int] = tickets.get("requests") or {}
    if requests:
        ordered = sorted(requests, key=lambda d: (-requests[d], d))
        labels = [department_label(d, departments, t) for d in ordered]
        values = [float(requests[d]) for d in ordered]
        panels.append((t("privacy.chart.requests"), labels, values, t("privacy.chart.count")))
        first: Mapping[str, float | None] = tickets.get("first_answer_median_s") or {}
        timed = [d for d in ordered if first.get(d) is not None]
        if timed:
            panels.append((t("privacy.chart.first_answer"),
                           [department_label(d, departments, t) for d in timed],
                           [float(first[d] or 0) / 3600 for d in timed],
                           t("privacy.chart.hours")))  # fmt: skip
    faq = figures.get("faq") or {}
    if faq.get("questions"):
        unanswered = max(0, faq["questions"] - faq.get("answered", 0) - faq.get("suggested", 0))
        panels.append((t("privacy.chart.faq"),
                       [t("privacy.chart.faq_answered"), t("privacy.chart.faq_suggested"),
                        t("privacy.chart.faq_none")],
                       [float(faq.get("answered", 0)), float(faq.get("suggested", 0)),
                        float(unanswered)], t("privacy.chart.count")))  # fmt: skip
    dates = (figures.get("meetups") or {}).get("dates") or []
    if dates:
        panels.append((t("privacy.chart.meetups"),
                       [f"{str(d['title'])[:24]} {str(d['start'])[8:10]}.{str(d['start'])[5:7]}."
                        for d in dates[-8:]],
                       [float(d.get("confirmed", 0)) for d in dates[-8:]],
                       t("privacy.chart.count")))  # fmt: skip

    figure = Figure(figsize=(8, 2.2 + 2.6 * max(1, len(panels))), dpi=100)
    FigureCanvasAgg(figure)
    figure.suptitle(t("privacy.chart.title", first=_date(period.first_day, t),
                      last=_date(period.last_day, t)), fontsize=13)  # fmt: skip
    if not panels:
        axis = figure.add_subplot(1, 1, 1)
        axis.axis("off")
        axis.text(0.5, 0.5, t("privacy.chart.empty"), ha="center", va="center", fontsize=12)
    for index, (title, labels, values, unit) in enumerate(panels, 1):
        axis = figure.add_subplot(len(panels), 1, index)
        positions = list(range(len(labels)))
        bars = axis.barh(positions, values, color="#1f5f8b")
        # A "$" in a meetup title or department name would start a formula in matplotlib.
        axis.set_yticks(positions, labels=[label.replace("$", r"\$") for label in labels])
        axis.invert_yaxis()
        axis.set_title(title, fontsize=11, loc="left")
        axis.set_xlabel(unit)
        axis.bar_label(bars, labels=[_decimal(v, t).removesuffix(",0").removesuffix(".0")
                                     for v in values], padding=3, fontsize=8)  # fmt: skip
        axis.spines[["top", "right"]].set_visible(False)
        axis.margins(x=0.15)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
