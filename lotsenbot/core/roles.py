"""Who may do what, decided in one place from the configuration."""

from __future__ import annotations

from dataclasses import dataclass

from lotsenbot.config import Config
from lotsenbot.core.types import Role


@dataclass(frozen=True)
class Person:
    user_id: str
    roles: frozenset[Role]
    departments: tuple[str, ...]  # departments this person is a pilot of

    def has(self, role: Role) -> bool:
        return role in self.roles

    @property
    def is_coordinator(self) -> bool:
        return Role.COORDINATOR in self.roles

    @property
    def is_pilot(self) -> bool:
        return Role.PILOT in self.roles


class Roles:
    """Staff: any user of an allowed server. Pilot: listed in a department.
    Coordinator: listed in ``[bot] coordinators``."""

    def __init__(self, config: Config) -> None:
        self._allowed = set(config.matrix.effective_allowed_servers)
        self._coordinators = set(config.bot.coordinators)
        self._pilot_of: dict[str, list[str]] = {}
        for department in config.departments:
            for pilot in department.pilots:
                self._pilot_of.setdefault(pilot, []).append(department.id)

    def is_allowed(self, user_id: str) -> bool:
        server = user_id.split(":", 1)[1] if ":" in user_id else ""
        return server in self._allowed

    def person(self, user_id: str) -> Person | None:
        """The person behind a Matrix ID, or None for users the bot does not serve."""
        if not self.is_allowed(user_id):
            return None
        roles = {Role.STAFF}
        departments = tuple(self._pilot_of.get(user_id, ()))
        if departments:
            roles.add(Role.PILOT)
        if user_id in self._coordinators:
            roles.add(Role.COORDINATOR)
        return Person(user_id, frozenset(roles), departments)

    def coordinators(self) -> list[str]:
        return sorted(self._coordinators)

    def pilots(self) -> list[str]:
        return sorted(self._pilot_of)

    def is_team(self, user_id: str) -> bool:
        """A configured pilot or coordinator: the people the bot names most often."""
        return user_id in self._pilot_of or user_id in self._coordinators

    def team(self) -> list[str]:
        return sorted(set(self._pilot_of) | self._coordinators)
