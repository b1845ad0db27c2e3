"""Message content: only sanitised HTML, no dangerous links, no room pings, explicit mentions."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from lotsenbot.core.markdown import escape, quote
from lotsenbot.core.types import OutMessage, Poll
from lotsenbot.matrix.format import (
    ALLOWED_ATTRIBUTES,
    ALLOWED_TAGS,
    message_content,
    plain_text,
    poll_content,
    poll_end_content,
    render_html,
    sanitize_html,
)

ZWJ = "\u2060"


class _Tags(HTMLParser):
    """Collects every tag with its attributes, as a browser-like parser sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag


def tags_of(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return parser.tags


def assert_only_allowed_markup(html: str) -> None:
    for tag, attrs in tags_of(html):
        assert tag in ALLOWED_TAGS, tag
        allowed = ALLOWED_ATTRIBUTES.get(tag, set()) | ({"rel"} if tag == "a" else set())
        assert set(attrs) <= allowed, (tag, attrs)
        href = (attrs.get("href") or "").strip().lower()
        if href:
            assert href.startswith(("http://", "https://", "mailto:")), href


HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">klick</a>',
    "<iframe src=https://böse.example></iframe>",
    '<b onclick="alert(1)">fett</b>',
    "<style>body{display:none}</style>",
    "<!-- Kommentar --><form><input name=p></form>",
    '<svg onload="alert(1)"></svg>',
]


@pytest.mark.parametrize("raw", HOSTILE)
def test_raw_html_in_markdown_is_shown_as_text(raw: str) -> None:
    content = message_content(OutMessage(f"Vorher {raw} nachher"))
    html = content["formatted_body"]
    assert_only_allowed_markup(html)
    assert [tag for tag, _ in tags_of(html)] == ["p"]  # nothing but the paragraph
    assert "&lt;" in html  # the markup is visible as text, not silently dropped


@pytest.mark.parametrize("raw", HOSTILE)
def test_sanitizer_strips_what_markdown_would_not_have_produced(raw: str) -> None:
    """Second line of defence: even HTML that skipped the Markdown renderer is cleaned."""
    html = sanitize_html(raw)
    assert_only_allowed_markup(html)
    # Script and style bodies go with their tags; handlers and javascript: with attributes.
    assert "alert" not in html and "display" not in html and "Kommentar" not in html


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "&#106;avascript:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
    ],
)
def test_dangerous_link_targets_are_removed(href: str) -> None:
    html = sanitize_html(f'<a href="{href}">Link</a>')
    assert_only_allowed_markup(html)
    assert "href" not in html
    assert "Link" in html
    assert_only_allowed_markup(render_html(f"[Link]({href})"))


def test_safe_links_survive() -> None:
    html = render_html("[Intranet](https://intranet.stadt.de/it) und [Mail](mailto:it@stadt.de)")
    links = [attrs["href"] for tag, attrs in tags_of(html) if tag == "a"]
    assert links == ["https://intranet.stadt.de/it", "mailto:it@stadt.de"]
    assert all(attrs.get("rel") == "noopener noreferrer" for tag, attrs in tags_of(html)
               if tag == "a")  # fmt: skip


def test_markdown_formatting_is_kept() -> None:
    html = render_html(
        "**fett** und *kursiv*\n\n- eins\n- zwei\n\n`code`\n\n| a | b |\n|---|---|\n| 1 | 2 |"
    )
    names = [tag for tag, _ in tags_of(html)]
    for tag in ("strong", "em", "ul", "li", "code", "table", "td"):
        assert tag in names, tag
    assert_only_allowed_markup(html)


def test_escaped_user_text_renders_literally() -> None:
    user = "[klick](javascript:alert(1)) # Überschrift <b>x</b> 1. Punkt @room"
    html = render_html(escape(user))
    assert [tag for tag, _ in tags_of(html)] == ["p"]
    content = message_content(OutMessage(escape(user)))
    assert content["body"] == user.replace("@room", f"@{ZWJ}room")
    quoted = [tag for tag, _ in tags_of(render_html(quote("Zeile 1\n\n# Zeile 3\n- Punkt")))]
    assert quoted[0] == "blockquote"
    assert not {"h1", "ul", "li"} & set(quoted)
    # A setext underline or an indented line of the user's is no heading and no code block.
    for text in ("Hallo\n===", "Hallo\n---", "Liste:\n    eingerückt", "\tTab"):
        tags = {tag for tag, _ in tags_of(render_html(quote(text)))}
        assert not {"h1", "h2", "pre", "code", "hr"} & tags, text
    assert "    eingerückt" not in message_content(OutMessage(escape("    eingerückt")))["body"]


def test_every_escaped_character_comes_back_in_the_plain_body() -> None:
    everything = "\\`*_{}[]()#+-.!|<>~&@:= https://portal.example/?id=5&x=1"
    assert plain_text(escape(everything)) == everything


def test_escaped_asterisks_stay_in_the_plain_body() -> None:
    """A user's literal asterisks must reach the plain ``body`` as they were typed."""
    for user in ("**fett**", "Bitte *nicht* löschen"):
        assert render_html(escape(user)) == f"<p>{user}</p>"
        assert message_content(OutMessage(escape(user)))["body"] == user


@pytest.mark.parametrize("ping", ["@room", "@ROOM", "@Room", "Achtung @room!"])
def test_room_ping_is_defused_in_body_and_html(ping: str) -> None:
    content = message_content(OutMessage(f"Hinweis an alle: {ping}"))
    for key in ("body", "formatted_body"):
        assert "@room" not in content[key].lower(), key
        assert f"@{ZWJ}" in content[key], key


def test_words_merely_starting_with_room_are_untouched() -> None:
    content = message_content(OutMessage("Kontakt: @roommate:stadt.de"))
    assert "@roommate:stadt.de" in content["body"]


def test_mentions_are_always_present_and_explicit() -> None:
    content = message_content(OutMessage("Ohne Erwähnung"))
    assert content["m.mentions"] == {"user_ids": []}
    content = message_content(
        OutMessage("Mit", mentions=("@b:stadt.de", "@a:stadt.de", "@b:stadt.de"))
    )
    assert content["m.mentions"] == {"user_ids": ["@a:stadt.de", "@b:stadt.de"]}
    assert "room" not in content["m.mentions"]
    poll = OutMessage("Termin?", poll=Poll("Wann?", (("a", "Montag"), ("b", "Dienstag"))))
    assert poll_content(poll)["m.mentions"] == {"user_ids": []}


def test_notice_reply_and_meta() -> None:
    meta = {"de.lotsenbot.ticket": {"id": 42, "status": "offen"}, "de.lotsenbot.error": None}
    content = message_content(OutMessage("Anfrage **#42**", meta=meta, reply_to="$abc"))
    assert content["msgtype"] == "m.notice"
    assert content["format"] == "org.matrix.custom.html"
    assert content["body"] == "Anfrage #42"
    assert content["m.relates_to"] == {"m.in_reply_to": {"event_id": "$abc"}}
    for key, value in meta.items():
        assert content[key] == value
    assert "m.relates_to" not in message_content(OutMessage("ohne Antwortbezug"))


def test_poll_content_carries_meta_and_fallback() -> None:
    message = OutMessage(
        "Umfrage: Wann?",
        meta={"de.lotsenbot.meetup": {"id": 7}},
        poll=Poll("Wann passt es?", (("mo", "Montag"), ("di", "Dienstag")), max_selections=2),
    )
    content = poll_content(message)
    start = content["org.matrix.msc3381.poll.start"]
    assert start["max_selections"] == 2
    assert [a["id"] for a in start["answers"]] == ["mo", "di"]
    assert content["body"] == "Umfrage: Wann?"
    assert content["de.lotsenbot.meetup"] == {"id": 7}


def test_poll_end_refers_to_the_start() -> None:
    message = OutMessage("Umfrage beendet.", meta={"de.lotsenbot.meetup": {"id": 7}},
                         ends_poll="$start")  # fmt: skip
    content = poll_end_content(message)
    assert content["m.relates_to"] == {"rel_type": "m.reference", "event_id": "$start"}
    assert content["org.matrix.msc3381.poll.end"] == {}
    assert content["body"] == content["org.matrix.msc1767.text"] == "Umfrage beendet."
    assert content["de.lotsenbot.meetup"] == {"id": 7}
    assert OutMessage.from_json(message.to_json()) == message


def test_plain_text_body() -> None:
    assert plain_text("**Wichtig:** bitte \\[nicht\\] löschen") == "Wichtig: bitte [nicht] löschen"
    assert plain_text("*kursiv* und 2 * 3 * 4") == "kursiv und 2 * 3 * 4"


def test_a_reply_to_a_message_in_a_thread_stays_in_the_thread() -> None:
    """Found in an exploratory test: an answer to "!frage …" asked in a thread carried only
    ``m.in_reply_to`` and showed up in the main timeline. In a thread it relates to the
    thread root (``m.thread``) and really replies to the question (not a fallback)."""
    content = message_content(OutMessage("Antwort", reply_to="$frage", thread_root="$wurzel"))
    assert content["m.relates_to"] == {
        "rel_type": "m.thread",
        "event_id": "$wurzel",
        "is_falling_back": False,
        "m.in_reply_to": {"event_id": "$frage"},
    }
    # No quoted reply (a direct chat): the thread root is the fallback for clients without
    # threads, marked as such.
    content = message_content(OutMessage("Antwort", thread_root="$wurzel"))
    assert content["m.relates_to"] == {
        "rel_type": "m.thread",
        "event_id": "$wurzel",
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": "$wurzel"},
    }
    assert "m.relates_to" not in message_content(OutMessage("Später, ohne Bezug"))


def test_thread_and_redaction_survive_the_outbox_row() -> None:
    message = OutMessage("Grund", thread_root="$wurzel", reply_to="$frage", redacts="evt:$f:0")
    again = OutMessage.from_json(message.to_json())
    assert (again.thread_root, again.reply_to, again.redacts) == ("$wurzel", "$frage", "evt:$f:0")
    # Rows written before: neither key.
    old = OutMessage.from_json('{"markdown": "x", "meta": {}, "mentions": [], "reply_to": null}')
    assert (old.thread_root, old.redacts) == (None, None)
