"""Department hints from the FAQ: which departments answer questions like this one?

A request's one sentence shares few words with a department's two-sentence
description, but the knowledge base holds dozens of questions staff really ask,
each filed under the department that answers it. The departments of the FAQ
entries closest to a request are therefore evidence for routing, which
:meth:`lotsenbot.tickets.routing.TopicRouter.route` takes as ``faq_hints``.

The function lives with the tickets feature because routing defines what a hint
means; the FAQ feature calls it with its own index, so both see the same scores.
"""

from __future__ import annotations

from lotsenbot.faq.search import FaqIndex

__all__ = ["department_hints"]


def department_hints(index: FaqIndex, text: str, limit: int = 5) -> list[tuple[str, float]]:
    """Departments of the ``limit`` closest FAQ entries, each with its best entry's score.

    One pair per department, best first (ties by id, so the result is stable).
    Taking the best entry rather than the sum keeps a department with many FAQ
    entries (the IT service usually has most) from collecting a large hint out of
    several mediocre matches. Entries without a department give no hint: they
    say nothing about who should handle a request. Scores are the FAQ's calibrated
    0..1 scores, so callers can compare them across requests.
    """
    if limit <= 0:
        return []
    best: dict[str, float] = {}
    for entry_id, score in index.rank(text, limit):
        entry = index.entry(entry_id)
        if entry is None or entry.department is None or score <= 0.0:
            continue
        if score > best.get(entry.department, 0.0):
            best[entry.department] = score
    return sorted(best.items(), key=lambda item: (-item[1], item[0]))
