"""The test homeserver itself: if these fail, every other integration test is meaningless."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiohttp
import pytest

from lotsenbot.devserver import Synapse
from tests.integration.conftest import MakeUser, RegisterUser
from tests.integration.helpers import MatrixRequestError, MatrixUser


async def test_server_binds_loopback_with_federation_off(synapse: Synapse) -> None:
    assert synapse.url.startswith("http://127.0.0.1:")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{synapse.url}/_matrix/client/versions") as response:
            assert response.status == 200
            assert "versions" in await response.json()
        # No federation listener: the server-server API is not served at all.
        async with http.get(f"{synapse.url}/_matrix/federation/v1/version") as response:
            assert response.status == 404
        # Open registration is off; accounts only come from the shared secret.
        async with http.post(
            f"{synapse.url}/_matrix/client/v3/register",
            json={"username": "intruder", "password": "x" * 12},
        ) as response:
            assert response.status == 403


async def test_register_is_idempotent_and_login_works(
    synapse: Synapse, register_user: RegisterUser
) -> None:
    account = await register_user("anna", displayname="Anna Schmidt")
    assert account.user_id == f"@{account.localpart}:{synapse.server_name}"
    again = await synapse.register(account.localpart, account.password)
    assert again == account.user_id
    token, device_id = await synapse.login(account.localpart, account.password)
    assert token and device_id
    async with aiohttp.ClientSession() as http:
        profile_url = f"{synapse.url}/_matrix/client/v3/profile/{account.user_id}"
        async with http.get(profile_url, headers={"Authorization": f"Bearer {token}"}) as resp:
            assert (await resp.json())["displayname"] == "Anna Schmidt"


async def test_wrong_password_is_rejected(synapse: Synapse, register_user: RegisterUser) -> None:
    account = await register_user("bernd")
    with pytest.raises(RuntimeError, match="M_FORBIDDEN"):
        await synapse.login(account.localpart, account.password + "falsch")


async def test_dm_message_reaches_the_other_user(make_user: MakeUser) -> None:
    anna = await make_user("anna")
    bernd = await make_user("bernd")

    room_id = await anna.create_dm(bernd.user_id)
    await anna.wait_for_join(room_id, bernd.user_id)

    mark = bernd.mark()
    event_id = await anna.send_text(
        room_id, "Wie beantrage ich ein Tablet?", formatted="Wie beantrage ich ein <b>Tablet</b>?"
    )
    received = await bernd.wait_for_message(room_id=room_id, sender=anna.user_id)
    assert received.event_id == event_id
    assert received.body == "Wie beantrage ich ein Tablet?"
    assert received.content["formatted_body"] == "Wie beantrage ich ein <b>Tablet</b>?"
    assert received.source["content"]["msgtype"] == "m.text"
    assert received.position >= mark

    # The DM is recorded as such for the creator.
    direct = await anna.get_account_data("m.direct")
    assert direct is not None and room_id in direct[bernd.user_id]


async def test_events_before_the_wait_are_not_missed_and_consumed_once(
    make_user: MakeUser,
) -> None:
    anna = await make_user("anna")
    bernd = await make_user("bernd")
    room_id = await anna.create_dm(bernd.user_id)
    await anna.wait_for_join(room_id, bernd.user_id)

    bernd.mark()
    first = await anna.send_text(room_id, "eins")
    second = await anna.send_text(room_id, "zwei")
    # Let both arrive at Bernd before anyone waits.
    await asyncio.sleep(1.0)

    got_first = await bernd.wait_for_message(room_id=room_id)
    got_second = await bernd.wait_for_message(room_id=room_id)
    assert (got_first.event_id, got_second.event_id) == (first, second)
    with pytest.raises(TimeoutError):
        await bernd.wait_for_message(room_id=room_id, timeout=0.5)

    # Own messages are skipped by default, visible on request.
    anna.mark()
    await anna.send_text(room_id, "drei")
    own = await anna.wait_for_message(room_id=room_id, sender=anna.user_id)
    assert own.body == "drei"


async def test_reaction_carries_relation(make_user: MakeUser) -> None:
    anna = await make_user("anna")
    bernd = await make_user("bernd")
    room_id = await anna.create_dm(bernd.user_id)
    await anna.wait_for_join(room_id, bernd.user_id)

    message_id = await anna.send_text(room_id, "Bitte mit 👍 bestätigen")
    await bernd.wait_for_message(room_id=room_id)
    anna.mark()
    await bernd.react(room_id, message_id, "👍")
    reaction = await anna.wait_for_event(room_id=room_id, event_type="m.reaction")
    relates = reaction.content["m.relates_to"]
    assert relates == {"rel_type": "m.annotation", "event_id": message_id, "key": "👍"}


async def test_restart_keeps_accounts_and_rooms(tmp_path: Path) -> None:
    async with Synapse(tmp_path / "hs") as server:
        password = "geheim-genug"
        user_id = await server.register("carla", password)
        first_url = server.url
        first_pid = server.pid

        await server.stop()
        assert not server.running
        assert first_pid is not None and not _pid_exists(first_pid)

        await server.start()
        assert server.url == first_url
        assert server.pid != first_pid
        token, _ = await server.login("carla", password)
        assert token
        assert await server.register("carla", password) == user_id


async def test_client_survives_a_server_outage(tmp_path: Path) -> None:
    async with Synapse(tmp_path / "hs") as server:
        accounts = {}
        for name in ("dora", "emil"):
            password = f"{name}-passwort"
            accounts[name] = (await server.register(name, password), password)
        dora = MatrixUser(server.url, *accounts["dora"])
        emil = MatrixUser(server.url, *accounts["emil"])
        async with dora, emil:
            room_id = await dora.create_dm(emil.user_id)
            await dora.wait_for_join(room_id, emil.user_id)

            await server.stop()
            await asyncio.sleep(1.0)
            await server.start()

            emil.mark()
            await dora.send_text(room_id, "wieder da")
            received = await emil.wait_for_message(room_id=room_id, timeout=20)
            assert received.body == "wieder da"


async def test_tight_message_limit_yields_limit_exceeded(tmp_path: Path) -> None:
    limits = {"rc_message": {"per_second": 0.1, "burst_count": 3}}
    started = time.monotonic()
    async with Synapse(tmp_path / "hs", rate_limits=limits) as server:
        user_id = await server.register("frieda", "frieda-passwort")
        frieda = MatrixUser(server.url, user_id, "frieda-passwort")
        async with frieda:
            room_id = await _create_room_despite_limit(frieda)
            errors: list[MatrixRequestError] = []
            for number in range(8):
                try:
                    await frieda.send_text(room_id, f"Nachricht {number}")
                except MatrixRequestError as error:
                    errors.append(error)
            assert errors, "eight messages at burst 3 must hit rc_message"
            assert {error.errcode for error in errors} == {"M_LIMIT_EXCEEDED"}
            assert all(error.retry_after_ms and error.retry_after_ms > 0 for error in errors)
    assert time.monotonic() - started < 60


async def test_relaxed_limits_allow_a_burst(make_user: MakeUser) -> None:
    anna = await make_user("anna")
    bernd = await make_user("bernd")
    room_id = await anna.create_dm(bernd.user_id)
    for number in range(30):
        await anna.send_text(room_id, f"Nachricht {number}")


async def test_second_instance_in_same_folder_is_refused(tmp_path: Path) -> None:
    async with Synapse(tmp_path / "hs") as server:
        assert Synapse.running_url(tmp_path / "hs") == server.url
        with pytest.raises(RuntimeError, match="already runs"):
            await Synapse(tmp_path / "hs").start()
    assert Synapse.running_url(tmp_path / "hs") is None


async def test_start_failure_reports_log_tail(tmp_path: Path) -> None:
    server = Synapse(tmp_path / "hs", extra_config={"database": {"name": "no-such-engine"}})
    with pytest.raises(RuntimeError, match="exited with code") as info:
        await server.start()
    assert "no-such-engine" in str(info.value)
    assert not server.running


async def _create_room_despite_limit(user: MatrixUser) -> str:
    """Room creation itself counts against rc_message; retry briefly if it is limited."""
    for _ in range(5):
        try:
            room = await user.client.room_create()
            room_id = getattr(room, "room_id", None)
            if room_id:
                return str(room_id)
        except MatrixRequestError:
            pass
        await asyncio.sleep(2)
    raise AssertionError("could not create a room")


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_encryption_ready_clients_exchange_an_encrypted_message(
    make_user: MakeUser,
) -> None:
    anna = await make_user("anna", encryption=True)
    bernd = await make_user("bernd", encryption=True)
    room_id = await anna.create_dm(bernd.user_id, encrypted=True)
    await anna.wait_for_join(room_id, bernd.user_id)

    bernd.mark()
    await anna.send_text(room_id, "vertraulich")
    received = await bernd.wait_for_message(room_id=room_id, timeout=20)
    assert received.body == "vertraulich"
    assert received.event.decrypted
