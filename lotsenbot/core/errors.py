"""User errors: typed exceptions the router turns into catalogue texts with an error code.

A feature raises e.g. ``BadArguments("tickets.usage.antwort")``; the user sees the German
text and the event carries ``"de.lotsenbot.error": {"code": "bad_arguments"}``.
"""

from __future__ import annotations

from typing import Any


class UserError(Exception):
    """``private``: the text repeats personal content (an open question's wording), so in
    a group room it goes to the person's direct chat, like ``Context.reply_privately``."""

    code = "user_error"

    def __init__(self, text_key: str, /, *, private: bool = False, **params: Any) -> None:
        super().__init__(text_key)
        self.text_key = text_key
        self.params = params
        self.private = private


class BadArguments(UserError):
    code = "bad_arguments"


class PermissionDenied(UserError):
    code = "permission_denied"

    def __init__(self, text_key: str = "core.error.permission_denied", /, **params: Any) -> None:
        super().__init__(text_key, **params)


class NotFound(UserError):
    code = "not_found"


class Conflict(UserError):
    """The action lost a race or does not fit the current state (e.g. already claimed)."""

    code = "conflict"
