"""Commands declared once, with their German name, English alias, role and argument help.

Each feature owns a :class:`Router` and declares its commands on it; the
:class:`Dispatcher` includes the routers, so the core never lists features by hand. The
help text is generated from the declarations and filtered by the asker's roles.
Multi-word names ("faq neu", "treffen ändern") are declared like any other command; the
longest matching name wins.

A command may also declare ``prepare``: slow, read-only work (rendering a chart) that the
dispatcher runs *before* the event's write transaction, so that other events are not held
up meanwhile; the handler finds the result in ``ctx.prepared``. It is an optimisation only:
if preparing fails, ``ctx.prepared`` is None and the handler does the work itself.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from lotsenbot.core.types import Role

if TYPE_CHECKING:
    from lotsenbot.core.context import Context
    from lotsenbot.core.services import Services

Handler = Callable[["Context", str], Awaitable[None]]
EventHandler = Callable[["Context"], Awaitable[bool]]
# (services, arguments, the event's "now") -> whatever the handler will use
Prepare = Callable[["Services", str, datetime], Awaitable[Any]]

ALL_ROLES: tuple[Role, ...] = (Role.STAFF, Role.PILOT, Role.COORDINATOR)


def fold(name: str) -> str:
    """Lower-case, and spell umlauts and ß the way people without a German keyboard do."""
    name = unicodedata.normalize("NFC", name.strip().lower())
    for src, dst in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss")):
        name = name.replace(src, dst)
    return " ".join(name.split())


END_PUNCTUATION = ".?!:"
"""What a sentence may put right after a command word; never part of the word."""


def strip_end(word: str) -> str:
    """``word`` without the punctuation a sentence puts after it ("hilfe." → "hilfe")."""
    return word.rstrip(END_PUNCTUATION)


@dataclass(frozen=True)
class Command:
    name: str  # German, as shown in help
    handler: Handler
    feature: str
    roles: tuple[Role, ...]
    args: str = ""  # argument help, e.g. "<Nr> <Text>"
    help_key: str = ""  # catalogue key of the one-line description
    aliases: tuple[str, ...] = ()  # English and other spellings
    hidden: bool = False
    prepare: Prepare | None = None  # read-only work before the transaction (see above)

    def names(self) -> list[str]:
        return [self.name, *self.aliases]

    def allowed_for(self, roles: Iterable[Role]) -> bool:
        return any(role in self.roles for role in roles)


@dataclass
class Router:
    """A feature's set of commands and event handlers."""

    feature: str
    commands: list[Command] = field(default_factory=list)
    message_handlers: list[tuple[int, EventHandler]] = field(default_factory=list)
    reaction_handlers: list[EventHandler] = field(default_factory=list)
    redaction_handlers: list[EventHandler] = field(default_factory=list)
    poll_handlers: list[EventHandler] = field(default_factory=list)

    def command(
        self,
        name: str,
        *,
        roles: Iterable[Role] = ALL_ROLES,
        args: str = "",
        help_key: str | None = None,
        aliases: Iterable[str] = (),
        hidden: bool = False,
        prepare: Prepare | None = None,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            key = help_key or f"{self.feature}.cmd.{fold(name).replace(' ', '_')}"
            self.commands.append(
                Command(
                    name=name,
                    handler=handler,
                    feature=self.feature,
                    roles=tuple(roles),
                    args=args,
                    help_key=key,
                    aliases=tuple(aliases),
                    hidden=hidden,
                    prepare=prepare,
                )
            )
            return handler

        return register

    def on_message(self, priority: int = 100) -> Callable[[EventHandler], EventHandler]:
        """Plain text that is no command; handlers run by priority until one returns True."""

        def register(handler: EventHandler) -> EventHandler:
            self.message_handlers.append((priority, handler))
            return handler

        return register

    def on_reaction(self, handler: EventHandler) -> EventHandler:
        self.reaction_handlers.append(handler)
        return handler

    def on_redaction(self, handler: EventHandler) -> EventHandler:
        self.redaction_handlers.append(handler)
        return handler

    def on_poll_response(self, handler: EventHandler) -> EventHandler:
        self.poll_handlers.append(handler)
        return handler


class CommandTable:
    """All commands of all features, looked up by folded name."""

    def __init__(self, routers: Iterable[Router]) -> None:
        self.commands: list[Command] = []
        self._by_name: dict[str, Command] = {}
        for router in routers:
            for command in router.commands:
                self.commands.append(command)
                for name in command.names():
                    for spelling in {fold(name), name.lower()}:
                        if spelling in self._by_name:
                            raise ValueError(f"Befehl {name!r} ist doppelt deklariert")
                        self._by_name[spelling] = command
        self._max_words = max((len(n.split()) for n in self._by_name), default=1)

    def match(self, text: str) -> tuple[Command, str] | None:
        """Find the command at the start of ``text`` (without prefix); return it and its args.

        Punctuation a sentence puts after the command word ("!Hilfe.", "!faq offen?",
        "!ankündigung: …") is not part of it; a name that ends in such a character itself
        ("ankündigung!") is found as written first. Arguments keep theirs.
        """
        head, _, _ = text.partition("\n")
        words = head.split()
        for count in range(min(self._max_words, len(words)), 0, -1):
            candidate = fold(" ".join(words[:count]))
            command = self._by_name.get(candidate) or self._by_name.get(strip_end(candidate))
            if command is not None:
                return command, _rest_after_words(text, count)
        return None

    def names_for(self, roles: Iterable[Role]) -> list[str]:
        roles = tuple(roles)
        return [
            name
            for command in self.commands
            if command.allowed_for(roles) and not command.hidden
            for name in command.names()
        ]


def _rest_after_words(text: str, count: int) -> str:
    """The text after the first ``count`` words, keeping line breaks of the rest."""
    position = 0
    for _ in range(count):
        while position < len(text) and _blank(text[position]):
            position += 1
        while position < len(text) and not text[position].isspace():
            position += 1
    while position < len(text) and _blank(text[position]):
        position += 1
    return text[position:].removeprefix("\n").rstrip()


def _blank(char: str) -> bool:
    """White space within a line, as ``str.split`` sees it (a pasted no-break space too)."""
    return char.isspace() and char not in "\n\r"
