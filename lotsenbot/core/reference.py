"""The command reference for README and admins, generated from the declarations.

Commands are declared once (name, aliases, roles, arguments, help text); this renders them
as Markdown tables per feature, so the documentation cannot drift from the code.
``lotsenbot commands`` prints it; a unit test keeps README.md in step.
"""

from __future__ import annotations

from collections.abc import Sequence

from lotsenbot.core.dispatch import core_router
from lotsenbot.core.router import Router
from lotsenbot.core.types import Role
from lotsenbot.texts import Catalogue

START = "<!-- commands:start -->"
END = "<!-- commands:end -->"
ROLE_LETTERS = {Role.STAFF: "M", Role.PILOT: "L", Role.COORDINATOR: "K"}
# In the chat, examples show dates a few weeks ahead of today; a document must not change
# every day, so it shows dates written as a pattern.
DOC_EXAMPLES = {"example_date": "TT.MM.JJJJ", "example_date_2": "TT.MM.JJJJ",
                "example_end": "TT.MM.JJJJ", "example_period": "TT.MM.JJJJ-TT.MM.JJJJ"}  # fmt: skip


async def _never(*_: object) -> None:  # the reference only reads declarations
    raise RuntimeError("not callable")


def command_reference(routers: Sequence[Router], texts: Catalogue, prefix: str = "!") -> str:
    lines: list[str] = []
    for router in [core_router(_never), *routers]:  # type: ignore[arg-type]
        visible = [c for c in router.commands if not c.hidden]
        if not visible:
            continue
        lines += [f"### {texts(f'{router.feature}.title')}", ""]
        lines += ["| Befehl | Englisch | Rollen | Zweck |", "|---|---|---|---|"]
        for command in visible:
            usage = f"`{prefix}{command.name} {command.args}`".replace(" `", "`")
            usage = usage.replace("|", "\\|")
            aliases = ", ".join(f"`{prefix}{a}`" for a in command.aliases) or "–"
            roles = ", ".join(ROLE_LETTERS[r] for r in Role if r in command.roles)
            purpose = texts(command.help_key, prefix=prefix, **DOC_EXAMPLES)
            purpose = purpose.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {usage} | {aliases} | {roles} | {purpose} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def default_reference() -> str:
    from lotsenbot.app import default_features

    return command_reference([f.router for f in default_features()], Catalogue("de"))


def replace_block(document: str, block: str) -> str:
    """Put ``block`` between the markers in ``document``."""
    head, _, rest = document.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{block}{END}{tail}"
