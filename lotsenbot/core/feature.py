"""The shape of a feature: a router plus optional start/stop for indexes and jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lotsenbot.core.router import Router

if TYPE_CHECKING:
    from lotsenbot.core.services import Services


class Feature:
    """Subclass per feature folder; ``app.py`` lists the features it runs."""

    name: str = ""

    def __init__(self) -> None:
        self.router = Router(self.name)
        self.services: Services | None = None

    async def start(self, services: Services) -> None:
        """Load indexes from the database and declare scheduled jobs."""
        self.services = services

    async def stop(self) -> None:
        """Release what start() acquired. Jobs are stopped with the scheduler."""
