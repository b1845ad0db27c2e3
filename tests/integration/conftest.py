"""Fixtures for integration tests: one real Synapse per test run, accounts and clients.

Starting Synapse costs one to two seconds, so a single server serves the whole session and
tests stay apart by using fresh accounts (every localpart gets a unique suffix). A test that
needs a differently configured server (tight rate limits, say) starts its own `Synapse`.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from lotsenbot.devserver import Synapse
from tests.integration.helpers import MatrixUser

_HERE = Path(__file__).parent
_counter = itertools.count(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark everything in this folder, so `-m "not integration"` gives a quick unit run."""
    for item in items:
        if _HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@dataclass(frozen=True)
class Account:
    """Credentials of a registered test account."""

    localpart: str
    user_id: str
    password: str


RegisterUser = Callable[..., Awaitable[Account]]
MakeUser = Callable[..., Awaitable[MatrixUser]]


def unique_localpart(prefix: str) -> str:
    """Localparts unique within the run, so tests sharing one server never see each other."""
    return f"{prefix}{next(_counter)}_{secrets.token_hex(2)}"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def synapse(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Synapse]:
    """The shared homeserver: started once, stopped at the end of the run."""
    server = Synapse(tmp_path_factory.mktemp("synapse"))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def register_user(synapse: Synapse) -> RegisterUser:
    """Factory: `await register_user("lotsin", admin=False, displayname=None) -> Account`."""

    async def register(
        prefix: str = "user",
        *,
        admin: bool = False,
        displayname: str | None = None,
        password: str | None = None,
        exact: bool = False,
    ) -> Account:
        localpart = prefix if exact else unique_localpart(prefix)
        password = password or secrets.token_urlsafe(12)
        user_id = await synapse.register(localpart, password, admin=admin, displayname=displayname)
        return Account(localpart, user_id, password)

    return register


@pytest_asyncio.fixture(loop_scope="session")
async def make_user(
    synapse: Synapse, register_user: RegisterUser, tmp_path: Path
) -> AsyncIterator[MakeUser]:
    """Factory: registered, logged-in, syncing `MatrixUser`s, closed after the test.

    `await make_user("anna", displayname="Anna Schmidt", encryption=True)`.
    """
    users: list[MatrixUser] = []

    async def make(
        prefix: str = "user",
        *,
        displayname: str | None = None,
        encryption: bool = False,
        auto_join: bool = True,
        account: Account | None = None,
    ) -> MatrixUser:
        account = account or await register_user(prefix, displayname=displayname)
        user = MatrixUser(
            synapse.url,
            account.user_id,
            account.password,
            store_path=tmp_path / "stores" / account.localpart if encryption else None,
            encryption=encryption,
            auto_join=auto_join,
        )
        users.append(user)
        await user.login()
        return user

    try:
        yield make
    finally:
        for user in users:
            await user.close()
