"""The resources a feature may use, handed over by the application object."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from lotsenbot.config import Config
from lotsenbot.core.clock import Clock
from lotsenbot.core.names import NameDirectory
from lotsenbot.core.outbox import Outbox
from lotsenbot.core.roles import Roles
from lotsenbot.storage.db import Database
from lotsenbot.texts import Catalogue

if TYPE_CHECKING:
    from lotsenbot.core.feature import Feature


@dataclass
class Services:
    config: Config
    db: Database
    texts: Catalogue
    clock: Clock
    roles: Roles
    outbox: Outbox
    scheduler: AsyncIOScheduler
    bot_user_id: str
    features: dict[str, Feature] = field(default_factory=dict)
    # Display names of people, for every message that shows one (lotsenbot.core.names).
    names: NameDirectory = field(default_factory=NameDirectory)

    @classmethod
    def create(
        cls,
        config: Config,
        db: Database,
        clock: Clock,
        *,
        outbox: Outbox | None = None,
        scheduler: AsyncIOScheduler | None = None,
    ) -> Services:
        """Everything a feature may use, derived from the configuration."""
        return cls(
            config=config,
            db=db,
            texts=Catalogue(config.bot.language),
            clock=clock,
            roles=Roles(config),
            outbox=outbox or Outbox(clock.now),
            scheduler=scheduler or AsyncIOScheduler(timezone=config.bot.tz),
            bot_user_id=config.matrix.user_id,
        )

    def feature(self, name: str) -> Any | None:
        """Another feature, for the few places where features cooperate (FAQ → tickets)."""
        return self.features.get(name)
