"""The Matrix side: login, the sync loop, invites, and turning events into ``Incoming``.

Everything Matrix-specific stays here and in the sibling modules; features never import
nio. The sync loop hands each batch to a callback that stores the events durably and only
then saves the sync token, so a crash between receiving and handling loses nothing.
Homeserver errors and timeouts back off exponentially, never in a hot loop.

Encrypted events that cannot be opened yet are kept and retried after each sync
(:mod:`lotsenbot.matrix.crypto`); once opened they take the same path as every other event.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinError,
    LoginResponse,
    MegolmEvent,
    ProfileGetDisplayNameResponse,
    RoomCreateError,
    RoomMemberEvent,
    RoomMessagesResponse,
    RoomPreset,
    RoomSendResponse,
    SyncError,
    SyncResponse,
    WhoamiError,
)
from nio.store import SqliteStore

from lotsenbot.config import MatrixConfig
from lotsenbot.core.durations import parse_duration
from lotsenbot.core.types import Incoming, OutMessage
from lotsenbot.matrix.backfill import fetch_gap
from lotsenbot.matrix.crypto import (
    CROSS_SIGNING_FILE,
    UNDECRYPTED_DB,
    CrossSigning,
    CrossSigningError,
    ForeignKeys,
    KeptEvent,
    KeyFileError,
    KeyVault,
    LateDecryption,
    UndecryptedStore,
    write_recovery_file,
)
from lotsenbot.matrix.errors import TransientSyncError
from lotsenbot.matrix.format import message_content
from lotsenbot.texts import Catalogue

log = logging.getLogger(__name__)

ENCRYPTION_STATE = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}
"""Initial state of the direct chats the bot opens: Megolm, as Element sets it."""

# Backoff cap: short enough that the bot is back soon after an outage, long enough that
# a down homeserver sees well under one request per second.
MAX_BACKOFF_SECONDS = 15.0
# Events of a left direct chat read back to find a message sent before the person left.
HISTORY_LIMIT = 200
SESSION_FILE = "session.json"
PICKLE_KEY_FILE = "pickle.key"
POLL_RESPONSE_TYPES = ("org.matrix.msc3381.poll.response", "m.poll.response")
FILE_MSGTYPES = ("m.image", "m.file", "m.audio", "m.video", "m.location")


class AuthenticationFailed(Exception):
    """The access token is invalid or revoked, or login failed: the admin has to act."""


@dataclass(frozen=True)
class Invite:
    room_id: str
    inviter: str | None
    is_direct: bool


@dataclass(frozen=True)
class SyncBatch:
    next_batch: str
    events: list[Incoming]
    invites: list[Invite]
    left_rooms: list[str]
    direct_rooms: dict[str, str]  # room_id -> the other member, for 1:1 rooms seen in the batch
    # Display names in membership events of the batch ("" for none), the latest per person.
    names: dict[str, str] = field(default_factory=dict)


# Returns True once the batch is stored, False if the bot stopped before it could be (then
# nothing of it may be treated as handled: it comes again after the next start).
BatchHandler = Callable[[SyncBatch], Awaitable[bool]]


def _write_private(path: Path, text: str) -> None:
    """Write a secret file (mode 0600) so that a crash leaves the old or the new content,
    never a truncated one: a half-written session would log in as a new device."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def pickle_key(config: MatrixConfig) -> str:
    """The key that encrypts the crypto store: configured, or generated once and kept."""
    if config.pickle_key:
        return config.pickle_key
    path = config.store_path / PICKLE_KEY_FILE
    if path.exists():
        return path.read_text("utf-8").strip()
    key = secrets.token_urlsafe(32)
    _write_private(path, key)
    return key


class MatrixTransport:
    def __init__(
        self,
        config: MatrixConfig,
        *,
        texts: Catalogue | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        config.store_path.mkdir(parents=True, exist_ok=True)
        key = pickle_key(config)
        client_config = AsyncClientConfig(
            encryption_enabled=True,
            store=SqliteStore,
            store_name="crypto.db",
            pickle_key=key,
            store_sync_tokens=False,  # the bot keeps its sync token in its own database
            max_limit_exceeded=0,  # rate limits are handled by the outbox, visibly
            max_timeouts=0,  # and timeouts by our own backoff
            request_timeout=30,
        )
        self.client = AsyncClient(
            config.homeserver,
            config.user_id,
            store_path=str(config.store_path),
            config=client_config,
        )
        self._stopping = asyncio.Event()
        self._synced = asyncio.Condition()  # notified after every sync nio has taken in
        # Direct chats the bot has created and nio has not yet seen complete: user and whether
        # the room was created encrypted (see room_ready).
        self._new_rooms: dict[str, tuple[str, bool]] = {}
        # New direct chats whose invitee declined before a sync showed them the invite.
        self._declined: set[str] = set()
        self._direct_lock = asyncio.Lock()  # m.direct is read, changed and written back
        self.user_id = config.user_id
        self.known_direct: set[str] = set()  # filled by the app from its database
        # The bot language is not part of [matrix]; the App may pass its catalogue.
        self.texts = texts or Catalogue()
        self.late = LateDecryption(
            self.client,
            UndecryptedStore(config.store_path / UNDECRYPTED_DB),
            notice_after=parse_duration(config.undecryptable_notice_after).total_seconds(),
            clock=clock,
        )
        self.cross_signing = CrossSigning(
            self.client,
            KeyVault(config.store_path / CROSS_SIGNING_FILE, key, config.user_id),
            config.password,
        )
        self._cross_signing_due: float | None = 0.0 if config.cross_signing else None

    # -- session ---------------------------------------------------------------------------

    @property
    def _session_path(self) -> Path:
        return self.config.store_path / SESSION_FILE

    def _saved_session(self) -> dict[str, str] | None:
        try:
            data = json.loads(self._session_path.read_text("utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        return data if data.get("user_id") == self.config.user_id else None

    async def login(self) -> None:
        """Log in once and keep the same device across restarts (needed for encryption)."""
        cfg = self.config
        if cfg.access_token:
            self.client.restore_login(cfg.user_id, cfg.device_id or "", cfg.access_token)
            await self._check_token()
            return
        saved = self._saved_session()
        if saved is not None:
            self.client.restore_login(cfg.user_id, saved["device_id"], saved["access_token"])
            try:
                await self._check_token()
                return
            except AuthenticationFailed:
                log.warning("Gespeicherte Sitzung ungültig, melde mich mit Passwort neu an")
                self.client.device_id = saved["device_id"]
        response = await self.client.login(password=cfg.password, device_name=cfg.device_name)
        if not isinstance(response, LoginResponse):
            raise AuthenticationFailed(f"Anmeldung fehlgeschlagen: {response.message}")
        _write_private(
            self._session_path,
            json.dumps(
                {
                    "user_id": response.user_id,
                    "device_id": response.device_id,
                    "access_token": response.access_token,
                }
            ),
        )
        log.info("Angemeldet als %s (Gerät %s)", response.user_id, response.device_id)

    async def _check_token(self) -> None:
        response = await self.client.whoami()
        if isinstance(response, WhoamiError):
            if response.status_code in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN", "M_FORBIDDEN"):
                raise AuthenticationFailed(f"Zugangstoken ungültig: {response.message}")
            raise ConnectionError(f"whoami fehlgeschlagen: {response.message}")

    # -- sync ------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()

    async def sync_forever(self, since: str | None, on_batch: BatchHandler) -> None:
        """Sync until stop(); raise AuthenticationFailed when the token stops working."""
        delay = 1.0
        token = since
        caught_up = False  # the first sync returns at once: `ready` means caught up
        # No lazy loading of members: the sender relies on nio knowing every member of a
        # direct chat (MatrixTransport.partner_left, room_ready).
        sync_filter = {"room": {"timeline": {"limit": 100}}, "presence": {"types": []}}
        rooms_known = token is None  # a first-ever sync brings the rooms' state anyway
        while not self._stopping.is_set():
            if not rooms_known:
                rooms_known = await self._learn_rooms()
                if not rooms_known:
                    await self._sleep(delay)
                    delay = min(delay * 2, MAX_BACKOFF_SECONDS)
                    continue
            sync_task = asyncio.ensure_future(
                self.client.sync(
                    timeout=await self._sync_timeout_ms() if token and caught_up else 0,
                    since=token,
                    sync_filter=sync_filter,
                    full_state=token is None,
                )
            )
            stop_task = asyncio.ensure_future(self._stopping.wait())
            try:
                await asyncio.wait({sync_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop_task.cancel()
            if self._stopping.is_set():
                sync_task.cancel()
                with contextlib.suppress(BaseException):
                    await sync_task
                return
            try:
                response = sync_task.result()
            except Exception as exc:  # connection refused, timeouts, bad gateway …
                log.warning("Sync fehlgeschlagen (%s), neuer Versuch in %.0f s", exc, delay)
                await self._sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)
                continue
            if isinstance(response, SyncError):
                if response.status_code in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"):
                    raise AuthenticationFailed(f"Zugangstoken ungültig: {response.message}")
                retry = (response.retry_after_ms or 0) / 1000
                log.warning("Sync-Fehler %s, neuer Versuch in %.0f s", response.message, delay)
                await self._sleep(max(delay, retry))
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)
                continue
            delay = 1.0
            caught_up = True
            self._note_declines(response)
            async with self._synced:  # nio has taken the response in: new rooms are known
                self._synced.notify_all()
            try:
                batch, gap_undecrypted = await self._convert(response, token)
                # Kept before the token moves on; the history of a first sync is not kept.
                undecrypted = [*gap_undecrypted, *self._undecrypted(response)]
                kept = await self.late.keep(undecrypted) if token else []
                if not await on_batch(batch):
                    continue  # stopping: the loop ends, the stored token is the old one
            except TransientSyncError as exc:
                # Nothing of this batch is lost: the token stays, the same batch comes again.
                log.warning("Sync-Ergebnis nicht verarbeitet (%s), neuer Versuch in %.0f s",
                            exc, delay)  # fmt: skip
                await self._sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)
                continue
            token = response.next_batch
            await self._crypto_housekeeping()
            await self.late.request_keys(kept)
            await self._retry_undecrypted(token, on_batch)
            await self._ensure_cross_signing()

    async def _learn_rooms(self) -> bool:
        """After a restart nio knows no rooms (members, encryption), so it could not send
        into a quiet room. A state-only sync without a token teaches it every joined room;
        its timeline is empty, so nothing is handled twice. False on a transient error."""
        try:
            response = await self.client.sync(
                timeout=0,
                full_state=True,
                sync_filter={"room": {"timeline": {"limit": 0}}, "presence": {"types": []}},
            )
        except Exception as exc:
            log.warning("Raumzustand nicht geladen (%s), neuer Versuch", exc)
            return False
        if isinstance(response, SyncError):
            if response.status_code in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"):
                raise AuthenticationFailed(f"Zugangstoken ungültig: {response.message}")
            log.warning("Raumzustand nicht geladen: %s", response.message)
            return False
        return True

    async def _sync_timeout_ms(self) -> int:
        """The long-poll time, cut short when a notice about an unreadable message is due."""
        timeout = self.config.sync_timeout_ms
        try:
            due = await self.late.seconds_to_next_notice()
        except Exception:  # the pending store is an add-on; syncing must go on without it
            return timeout
        if due is None:
            return timeout
        return max(1000, min(timeout, int(due * 1000) + 200))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _crypto_housekeeping(self) -> None:
        client = self.client
        if not client.olm:
            return
        try:
            await client.send_to_device_messages()
            if client.should_upload_keys:
                await client.keys_upload()
            if client.should_query_keys:
                await client.keys_query()
            if client.should_claim_keys:
                await client.keys_claim(client.get_users_for_key_claiming())
        except Exception as exc:
            log.warning("Schlüsselverwaltung fehlgeschlagen: %s", exc)

    # -- late decryption -------------------------------------------------------------------

    def _undecrypted(self, response: SyncResponse) -> list[tuple[str, MegolmEvent]]:
        return [
            (room_id, event)
            for room_id, info in response.rooms.join.items()
            for event in info.timeline.events
            if isinstance(event, MegolmEvent) and event.sender != self.user_id
        ]

    async def _retry_undecrypted(self, token: str, on_batch: BatchHandler) -> None:
        """Feed events whose key has arrived into the normal path; tell senders about the rest."""
        try:
            outcome = await self.late.retry()
            if outcome.decrypted:
                events = []
                for kept, event in outcome.decrypted:
                    direct = self._is_direct(kept.room_id)
                    incoming = self._incoming(kept.room_id, event, direct)
                    if incoming is not None:
                        events.append(incoming)
                if events and not await on_batch(SyncBatch(token, events, [], [], {})):
                    return  # stopping before they were stored: kept for the next start
                await self.late.done(kept for kept, _ in outcome.decrypted)
            for room_id, items in outcome.to_notify.items():
                if self._is_direct(room_id):
                    await self._notify_undecryptable(room_id, items)
                else:
                    # In a group room the message may not have been meant for the bot at all;
                    # a notice there would be noise for everyone else.
                    await self.late.store.mark_notified(item.event_id for item in items)
                    log.warning("%d Nachricht(en) in Gruppenraum %s blieben unlesbar",
                                len(items), room_id)  # fmt: skip
        except Exception as exc:  # never let an unreadable message stop the sync loop
            log.warning("Nachträgliches Entschlüsseln fehlgeschlagen: %s", exc)

    async def _notify_undecryptable(self, room_id: str, items: list[KeptEvent]) -> None:
        """One notice per direct chat and round; the transaction id makes a resend harmless."""
        error = {"code": "undecryptable", "events": [item.event_id for item in items]}
        message = OutMessage(self.texts("crypto.undecryptable"), meta={"de.lotsenbot.error": error})
        digest = hashlib.sha256(items[0].event_id.encode("utf-8")).hexdigest()[:32]
        response = await self.client.room_send(
            room_id,
            "m.room.message",
            message_content(message),
            tx_id=f"undecryptable-{digest}",
            ignore_unverified_devices=True,
        )
        if isinstance(response, RoomSendResponse):
            await self.late.store.mark_notified(item.event_id for item in items)
            log.warning("%d Nachricht(en) in %s blieben unlesbar; Hinweis gesendet",
                        len(items), room_id)  # fmt: skip
        else:
            log.warning("Hinweis auf unlesbare Nachricht in %s nicht gesendet: %s", room_id,
                        getattr(response, "message", response))  # fmt: skip

    # -- cross-signing ---------------------------------------------------------------------

    @property
    def cross_signing_settled(self) -> bool:
        """Whether this run's cross-signing check is over (done, refused or switched off)."""
        return self._cross_signing_due is None

    async def _ensure_cross_signing(self) -> None:
        """Once per run, after the device keys are on the server: check or create the chain."""
        due = self._cross_signing_due
        olm = self.client.olm
        if due is None or time.monotonic() < due or olm is None or not olm.account.shared:
            return
        try:
            chain, recovery_key = await self.cross_signing.ensure()
        except ForeignKeys as exc:
            self._cross_signing_due = None
            log.warning(
                "Das Konto %s hat bereits Cross-Signing-Schlüssel (Master %s), die dieser Bot "
                "nicht besitzt. Der Bot arbeitet weiter, sein Gerät erscheint aber als nicht "
                "verifiziert. Zum Ersetzen: „lotsenbot crypto bootstrap --reset --config …“ "
                "(braucht das Passwort) oder mit Element am Bot-Konto anmelden und die "
                "Cross-Signing-Schlüssel dort zurücksetzen.",
                self.user_id,
                exc,
            )
            return
        except (CrossSigningError, KeyFileError) as exc:
            self._cross_signing_due = None
            log.error("Cross-Signing nicht eingerichtet: %s", exc)
            return
        except Exception as exc:  # network trouble: try again in a minute
            self._cross_signing_due = time.monotonic() + 60
            log.warning("Cross-Signing-Prüfung fehlgeschlagen (%s), neuer Versuch später", exc)
            return
        self._cross_signing_due = None
        if recovery_key is not None:
            path = write_recovery_file(self.config.store_path, self.user_id, recovery_key)
            log.warning(
                "Cross-Signing eingerichtet. Der Wiederherstellungsschlüssel liegt in %s – bitte "
                "sicher verwahren (z. B. im Passwort-Tresor) und die Datei danach löschen.",
                path,
            )
        else:
            log.info("Cross-Signing in Ordnung (Master-Schlüssel %s, Gerät signiert: %s)",
                     chain.master, chain.device_signed)  # fmt: skip

    # -- events ----------------------------------------------------------------------------

    async def _convert(
        self, response: SyncResponse, since: str | None
    ) -> tuple[SyncBatch, list[tuple[str, MegolmEvent]]]:
        """The batch, and the events of fetched gaps that could not be decrypted yet (the
        sync's own ones are found by :meth:`_undecrypted`); both are kept for a retry."""
        events: list[Incoming] = []
        direct: dict[str, str] = {}
        names: dict[str, str] = {}
        gap_undecrypted: list[tuple[str, MegolmEvent]] = []
        for room_id, info in response.rooms.join.items():
            other = self._direct_partner(room_id)
            is_direct = other is not None
            if other is not None:
                direct[room_id] = other
            timeline = list(info.timeline.events)
            if since and info.timeline.limited and info.timeline.prev_batch:
                # More arrived than the timeline limit: fetch the gap, so nothing is skipped.
                gap = await fetch_gap(self.client, room_id, info.timeline.prev_batch, since)
                gap_undecrypted += [
                    (room_id, event)
                    for event in gap
                    if isinstance(event, MegolmEvent) and event.sender != self.user_id
                ]
                timeline = [*gap, *timeline]
            names.update(self._member_names([*info.state, *timeline]))
            for event in timeline:
                incoming = self._incoming(room_id, event, is_direct)
                if incoming is not None:
                    events.append(incoming)
        invites = [self._invite(room_id, info.invite_state)
                   for room_id, info in response.rooms.invite.items()]  # fmt: skip
        batch = SyncBatch(response.next_batch, events, invites, list(response.rooms.leave), direct,
                          names)  # fmt: skip
        return batch, gap_undecrypted

    def _member_names(self, events: list[Any]) -> dict[str, str]:
        """Display names of people who joined or renamed themselves in these events (state
        first, then timeline, so the latest wins); "" for a person without one."""
        names: dict[str, str] = {}
        for event in events:
            if not isinstance(event, RoomMemberEvent) or event.membership != "join":
                continue
            user_id = event.state_key
            if not isinstance(user_id, str) or user_id == self.user_id:
                continue
            content = event.content if isinstance(event.content, dict) else {}
            name = content.get("displayname")
            names[user_id] = name if isinstance(name, str) else ""
        return names

    def member_name(self, user_id: str) -> str | None:
        """The display name ``user_id`` has in a room the bot shares with them, from what
        the sync has already told nio (no request): their direct chat with the bot first.
        "" if they have set none, None if the bot shares no room with them."""
        rooms = sorted(self.client.rooms.values(),
                       key=lambda room: room.room_id not in self.known_direct)  # fmt: skip
        for room in rooms:
            user = room.users.get(user_id)
            if user is not None:  # an invitation carries the invitee's profile name, too
                return user.display_name or ""
        return None

    async def profile_name(self, user_id: str, timeout: float = 10.0) -> str | None:
        """The display name in the person's public profile ("" if they have set none or the
        profile does not exist), or None if the homeserver did not answer (try later)."""
        try:
            response = await asyncio.wait_for(self.client.get_displayname(user_id), timeout)
        except Exception as exc:  # timeouts, connection errors
            log.debug("Anzeigename von %s nicht abgefragt: %s", user_id, exc)
            return None
        if isinstance(response, ProfileGetDisplayNameResponse):
            return response.displayname or ""
        code = getattr(response, "status_code", None)
        if code in ("M_NOT_FOUND", "M_FORBIDDEN"):
            return ""  # no such profile, or not shown to the bot: nothing to learn
        log.debug("Anzeigename von %s nicht abgefragt: %s", user_id, response)
        return None

    def remember_direct(self, room_id: str) -> None:
        """A room that is a direct chat: invited as one (``is_direct``) or created as one."""
        self.known_direct.add(room_id)

    def forget_direct(self, room_id: str) -> None:
        self.known_direct.discard(room_id)

    def _direct_partner(self, room_id: str) -> str | None:
        """The other member of a direct chat, or None for group rooms.

        Member count alone is not enough: a group room the bot was invited to first has two
        members for a while, and private answers must never go there."""
        if room_id not in self.known_direct:
            return None
        room = self.client.rooms.get(room_id)
        members = set(room.users) | set(room.invited_users) if room else set()
        others = sorted(members - {self.user_id})
        return others[0] if len(members) <= 2 and len(others) == 1 else None

    def _is_direct(self, room_id: str) -> bool:
        return self._direct_partner(room_id) is not None

    def _invite(self, room_id: str, state: list[Any]) -> Invite:
        inviter = None
        is_direct = False
        for event in state:
            source = getattr(event, "source", None) or {}
            if source.get("type") == "m.room.member" and source.get("state_key") == self.user_id:
                inviter = source.get("sender")
                # nio moves "content" out of the source dict into an attribute.
                content = getattr(event, "content", None) or source.get("content") or {}
                is_direct = bool(content.get("is_direct")) if isinstance(content, dict) else False
        return Invite(room_id, inviter, is_direct)

    def _incoming(self, room_id: str, event: Any, is_direct: bool) -> Incoming | None:
        """Reduce a timeline event to an Incoming, or None for events the bot ignores."""
        encrypted = bool(getattr(event, "decrypted", False))
        if isinstance(event, MegolmEvent):
            return None  # kept by the sync loop and retried once its key arrives
        source: dict[str, Any] = getattr(event, "source", None) or {}
        sender = source.get("sender")
        event_id = source.get("event_id")
        event_type = source.get("type")
        content = source.get("content")
        if not isinstance(sender, str) or not isinstance(event_id, str) or sender == self.user_id:
            return None
        if not isinstance(content, dict) or not isinstance(event_type, str):
            return None
        origin_ts = source.get("origin_server_ts")
        base: dict[str, Any] = {
            "event_id": event_id,
            "room_id": room_id,
            "sender": sender,
            "is_direct": is_direct,
            "origin_ts": origin_ts if isinstance(origin_ts, int) else 0,
            "encrypted": encrypted,
            "sender_name": self._sender_name(room_id, sender),
        }
        relates = content.get("m.relates_to")
        relates = relates if isinstance(relates, dict) else {}
        related_id = relates.get("event_id") if isinstance(relates.get("event_id"), str) else None
        if event_type == "m.reaction":
            key = relates.get("key")
            if (
                relates.get("rel_type") != "m.annotation"
                or not related_id
                or not isinstance(key, str)
            ):
                return None
            return Incoming(kind="reaction", relates_to=related_id, key=key[:64], **base)
        if event_type == "m.room.redaction":
            redacts = source.get("redacts") or content.get("redacts")
            if not isinstance(redacts, str):
                return None
            return Incoming(kind="redaction", relates_to=redacts, **base)
        if event_type in POLL_RESPONSE_TYPES:
            body = content.get("org.matrix.msc3381.poll.response") or content.get("m.selections")
            answers = body.get("answers") if isinstance(body, dict) else body
            if not related_id or not isinstance(answers, list):
                return None
            clean = tuple(a for a in answers if isinstance(a, str))[:20]
            return Incoming(kind="poll_response", relates_to=related_id, answers=clean, **base)
        if event_type != "m.room.message":
            return None
        msgtype = content.get("msgtype")
        if msgtype == "m.notice" or not isinstance(msgtype, str):
            return None  # other bots speak in notices; answering them risks loops
        if relates.get("rel_type") == "m.replace":
            return Incoming(kind="edit", relates_to=related_id, msgtype=msgtype, **base)
        if msgtype in FILE_MSGTYPES or msgtype == "m.sticker":
            return Incoming(kind="file", msgtype=msgtype, **base)
        body = content.get("body")
        if not isinstance(body, str):
            return None
        formatted = content.get("formatted_body")
        formatted = formatted if isinstance(formatted, str) else None
        # Addressed as written: a reply to the bot quoting it names the bot, as it always did
        # for clients that send no m.mentions.
        mentions_bot = self._mentions_me(room_id, content, body)
        if isinstance(relates.get("m.in_reply_to"), dict):
            body, formatted = strip_reply_fallback(body, formatted)
        root, latest = thread_of(relates)
        return Incoming(
            kind="message",
            body=body,
            formatted_body=formatted,
            msgtype=msgtype,
            mentions_bot=mentions_bot,
            reply_to=replied_to(relates),
            thread_root=root,
            thread_latest=latest,
            **base,
        )

    def _sender_name(self, room_id: str, sender: str) -> str | None:
        """The sender's display name in the room as nio knows it after taking in the sync
        (so the newest, should they have renamed themselves in the same batch); None if
        nio does not know them there."""
        room = self.client.rooms.get(room_id)
        user = room.users.get(sender) if room is not None else None
        if user is None:
            return None
        return user.display_name or ""

    def _mentions_me(self, room_id: str, content: dict[str, Any], body: str) -> bool:
        """Whether the message is addressed to the bot.

        Intentional mentions (``m.mentions``, Matrix 1.7) name the bot when it was picked
        as a pill or the message replies to it. Clients send ``m.mentions`` with every
        message, also when someone simply typed the bot's name, so a message that begins
        by addressing the bot by name counts as well (:func:`addresses`). Clients that send
        no ``m.mentions`` at all are read as before: the Matrix ID anywhere, or the
        localpart at the start."""
        localpart = self.user_id[1:].split(":", 1)[0]
        mentions = content.get("m.mentions")
        if isinstance(mentions, dict):
            ids = mentions.get("user_ids")
            if isinstance(ids, list) and self.user_id in ids:
                return True
        elif self.user_id in body or body.lower().startswith(localpart.lower()):
            return True
        return addresses(body, [self.user_id, localpart, self._own_name(room_id)])

    def _own_name(self, room_id: str) -> str:
        """The bot's display name in the room, as people see (and type) it; "" if unknown."""
        room = self.client.rooms.get(room_id)
        user = room.users.get(self.user_id) if room is not None else None
        return (user.display_name or "") if user is not None else ""

    # -- rooms -----------------------------------------------------------------------------

    async def join(self, room_id: str) -> bool:
        """Join; False when the room cannot be joined (gone, forbidden). A transient failure
        (rate limit, server error, no connection) raises, so the batch is tried again."""
        try:
            response = await self.client.join(room_id)
        except Exception as exc:
            raise TransientSyncError(f"Beitritt zu {room_id}: {exc}") from exc
        if isinstance(response, JoinError):
            if response.status_code in ("M_FORBIDDEN", "M_NOT_FOUND", "M_UNKNOWN_ROOM"):
                log.warning("Beitritt zu %s nicht möglich: %s", room_id, response.message)
                return False
            raise TransientSyncError(f"Beitritt zu {room_id}: {response.message}")
        return True

    async def decline(self, room_id: str) -> None:
        try:
            await self.client.room_leave(room_id)
        except Exception as exc:
            raise TransientSyncError(f"Ablehnen von {room_id}: {exc}") from exc
        with contextlib.suppress(Exception):
            await self.client.room_forget(room_id)

    async def create_direct_room(self, user_id: str) -> str:
        """Open a direct chat with ``user_id`` (encrypted with ``encrypt_direct_chats``).

        Nothing is sent into it before nio knows it complete (see :meth:`room_ready`), so
        an encrypted room never gets a plain message."""
        encrypted = self.config.encrypt_direct_chats
        response = await self.client.room_create(
            is_direct=True,
            invite=[user_id],
            preset=RoomPreset.trusted_private_chat,
            initial_state=[ENCRYPTION_STATE] if encrypted else [],
        )
        if isinstance(response, RoomCreateError):
            raise RoomCreationFailed(
                response.status_code or "", response.message, response.retry_after_ms
            )
        self._new_rooms[response.room_id] = (user_id, encrypted)
        self.remember_direct(response.room_id)
        await self._mark_direct(user_id, response.room_id)
        return response.room_id

    def room_ready(self, room_id: str) -> bool:
        """Whether the bot may send into ``room_id`` now.

        A room the bot has just created can reach nio in pieces: a sync that ran while the
        homeserver was still writing the room's initial state shows the room without its
        encryption event or the invited person. nio would then send in plain text, or share
        the room key without that person's devices. Such a room is ready once nio knows it
        as encrypted (if it was created so) with the invited person in it; every other room
        is ready whenever nio knows it."""
        room = self.client.rooms.get(room_id)
        if room is None:
            return False
        pending = self._new_rooms.get(room_id)
        if pending is None:
            return True
        user_id, encrypted = pending
        if user_id not in room.users or (encrypted and not room.encrypted):
            return False
        del self._new_rooms[room_id]
        return True

    async def wait_for_room(self, room_id: str, timeout: float) -> bool:
        """Wait until :meth:`room_ready`; False after ``timeout`` seconds or as soon as the
        invitee has declined. A room the bot has just created is complete after a sync or
        two, which its creation ends early."""
        if self.room_ready(room_id):
            return True
        try:
            async with asyncio.timeout(timeout), self._synced:
                await self._synced.wait_for(
                    lambda: room_id in self._declined or self.room_ready(room_id)
                )
        except TimeoutError:
            return False
        return self.room_ready(room_id)

    def partner_left(self, room_id: str, user_id: str) -> bool:
        """Whether ``user_id`` has left (or declined) the direct chat ``room_id``.

        A message into such a room reaches nobody, yet the homeserver accepts it. A room nio
        knows without the person, neither joined nor invited, is left; a room the bot has
        just created may simply not have reached a sync yet, so it only counts as left once
        a sync has shown the person's leave (:meth:`_note_declines`). A room nio does not
        know at all is not judged here."""
        room = self.client.rooms.get(room_id)
        if room is None or user_id in room.users:
            return False
        return room_id not in self._new_rooms or room_id in self._declined

    def live_direct_room(self, user_id: str) -> str | None:
        """Another direct chat in which ``user_id`` is with the bot (e.g. one the person
        opened after leaving the old one), or None."""
        for room_id in sorted(self.known_direct):
            room = self.client.rooms.get(room_id)
            if (
                room is not None
                and self._direct_partner(room_id) == user_id
                and user_id not in room.invited_users
            ):
                return room_id
        return None

    def declined(self, room_id: str) -> bool:
        """Whether the invitee declined this direct chat the bot has just created."""
        return room_id in self._declined

    async def confirm_declined(self, room_id: str) -> bool:
        """Ask the homeserver whether the invitee of a new direct chat that is still not
        ready has declined. A decline can come before :meth:`create_direct_room` has
        registered the room, and the sync that carried it is then not looked at
        (:meth:`_note_declines`); the room state says it either way. False on any error
        (the caller retries later)."""
        pending = self._new_rooms.get(room_id)
        if pending is None or room_id in self._declined:
            return room_id in self._declined
        try:
            response = await self.client.room_get_state_event(room_id, "m.room.member", pending[0])
        except Exception as exc:
            log.debug("Mitgliedschaft in %s nicht abgefragt: %s", room_id, exc)
            return False
        content = getattr(response, "content", None) or {}
        if content.get("membership") in ("leave", "ban"):
            self._declined.add(room_id)
            return True
        return False

    async def sent_while_present(
        self, room_id: str, user_id: str, txn_id: str, *, max_events: int = HISTORY_LIMIT
    ) -> str | None:
        """The event the bot sent into ``room_id`` with ``txn_id`` during the person's last
        stay in it (``user_id`` has left since), or None.

        For a message that went out but whose "sent" mark did not commit: retried in a new
        chat, it would reach the person twice (Synapse deduplicates transaction ids per
        room only). The history is read backwards from the newest event: the person's last
        leave, their stay, back to the invitation or the previous leave that began it, at
        most ``max_events`` events. A match counts only if the person really joined during
        that stay: a message sent while they were invited is shown to them once they join
        (the bot's direct chats share history with invitees), one sent to an invitation they
        declined never reached them. A name or avatar change is a ``join`` too and is
        skipped. The homeserver shows its sender the transaction id of its own events.

        Raises :class:`HistoryUnavailable` when the homeserver does not answer the question
        (rate limit, server error): "not found" would send the message a second time.
        """
        start: str | None = None
        left = joined = False
        found: str | None = None
        seen = 0
        while seen < max_events:
            response = await self.client.room_messages(
                room_id, start=start, limit=min(50, max_events - seen)
            )
            if not isinstance(response, RoomMessagesResponse):
                code = str(getattr(response, "status_code", "") or "")
                if code in ("M_FORBIDDEN", "M_NOT_FOUND"):
                    return None  # the bot cannot read it: nothing to find
                raise HistoryUnavailable(
                    code, str(getattr(response, "message", response)),
                    getattr(response, "retry_after_ms", None),
                )  # fmt: skip
            for event in response.chunk:
                seen += 1
                source = getattr(event, "source", None) or {}
                if source.get("type") == "m.room.member" and source.get("state_key") == user_id:
                    membership = (source.get("content") or {}).get("membership")
                    unsigned = source.get("unsigned") or {}
                    before = (unsigned.get("prev_content") or {}).get("membership")
                    if membership in ("leave", "ban"):
                        if left:
                            return found if joined else None  # the stay before ended here
                        left = True
                    elif membership == "join" and before != "join" and left:
                        joined = True
                    elif membership == "invite" and left:
                        return found if joined else None  # the stay began here
                    continue
                if left and found is None and source.get("sender") == self.user_id:
                    txn = getattr(event, "transaction_id", None) or (
                        source.get("unsigned") or {}
                    ).get("transaction_id")
                    if txn == txn_id:
                        found = str(source.get("event_id") or event.event_id)
                if found is not None and joined:
                    return found
            if not response.chunk or not response.end or response.end == start:
                return found if joined else None  # the beginning of the room
            start = response.end
        return None  # no join seen within the limit: better twice than never

    async def abandon_direct(self, room_id: str, user_id: str) -> None:
        """Stop using a direct chat the other person has left or declined: leave it, forget
        it and take it out of ``m.direct``, as a person would with a chat nobody is in any
        more. Best effort; a failure changes nothing for the next message, which goes to
        another chat anyway."""
        self.forget_direct(room_id)
        self._new_rooms.pop(room_id, None)
        self._declined.discard(room_id)
        try:
            await self.client.room_leave(room_id)
            await self.client.room_forget(room_id)
        except Exception as exc:
            log.warning("Verlassener Direktchat %s nicht verlassen: %s", room_id, exc)
        await self._mark_direct(user_id, room_id, add=False)

    def _note_declines(self, response: SyncResponse) -> None:
        """Record new direct chats whose invitee left before a sync showed the invite: nio
        then never shows the person in the room, and :meth:`room_ready` alone would wait in
        vain."""
        for room_id, info in response.rooms.join.items():
            pending = self._new_rooms.get(room_id)
            if pending is None:
                continue
            for event in (*info.state, *info.timeline.events):
                if (
                    isinstance(event, RoomMemberEvent)
                    and event.state_key == pending[0]
                    and event.membership in ("leave", "ban")
                ):
                    self._declined.add(room_id)

    async def _mark_direct(self, user_id: str, room_id: str, *, add: bool = True) -> None:
        """Record the room in the bot's ``m.direct`` account data, as clients do (or, with
        ``add=False``, take it out again)."""
        from nio.api import Api

        path = Api._build_path(["user", self.user_id, "account_data", "m.direct"])
        try:
            async with self._direct_lock:  # read-modify-write: one at a time
                await self._update_direct(path, user_id, room_id, add=add)
        except Exception as exc:  # cosmetic for clients; never fail a delivery over it
            log.debug("m.direct nicht aktualisiert: %s", exc)

    async def _update_direct(self, path: str, user_id: str, room_id: str, *, add: bool) -> None:
        headers = {"Authorization": f"Bearer {self.client.access_token}"}
        response = await self.client.send("GET", path, headers=headers)
        try:
            if response.status == 200:
                current = await response.json()
            elif response.status == 404:
                current = {}  # none yet
            else:
                return  # unknown: writing {} back would erase everyone else's entry
        finally:
            response.release()
        if not isinstance(current, dict):
            return
        rooms = current.setdefault(user_id, [])
        if add and room_id not in rooms:
            rooms.append(room_id)
        elif not add and room_id in rooms:
            rooms.remove(room_id)
            if not rooms:
                del current[user_id]
        else:
            return
        response = await self.client.send("PUT", path, json.dumps(current), headers=headers)
        response.release()

    async def close(self) -> None:
        """Close the connection; the device stays logged in (never logout on shutdown)."""
        await self.late.store.close()
        await self.client.close()


def _event_id(value: Any) -> str | None:
    valid = isinstance(value, str) and value.startswith("$") and len(value) <= 255
    return value if valid else None


def thread_of(relates: dict[str, Any]) -> tuple[str | None, str | None]:
    """The thread a message was sent in: its root event, and the thread's latest event the
    client named as the fallback reply (``is_falling_back``) if it did; (None, None) for a
    message in the main timeline."""
    if relates.get("rel_type") != "m.thread":
        return None, None
    root = _event_id(relates.get("event_id"))
    if root is None:
        return None, None
    reply = relates.get("m.in_reply_to")
    fallback = relates.get("is_falling_back") is True and isinstance(reply, dict)
    return root, _event_id(reply.get("event_id")) if fallback and isinstance(reply, dict) else None


# Greetings that may come before the bot's name ("Hallo Lotsenbot, …").
_GREETING = r"(?:(?:hallo|hi|hey|moin|servus|guten\s+(?:morgen|tag|abend)|liebe[rs]?)\s+)?"


def addresses(body: str, names: list[str]) -> bool:
    """Whether ``body`` begins by addressing someone called one of ``names``.

    "@lotsenbot wie …", "Lotsenbot, wie …", "Hallo Lotsenbot: …" or the name alone do;
    "Lotsenbot ist heute langsam" (a sentence about the bot) and a name later in the
    sentence do not. Without an "@", the name must be set off by a comma, colon, dash or
    an end mark, the way one addresses a person in writing. Case does not matter."""
    text = body.lstrip()
    for name in sorted({n.strip() for n in names if n and n.strip()}, key=len, reverse=True):
        escaped = re.escape(name.lstrip("@"))
        # "@name" then anything but a word character; a bare name needs a separator.
        at = rf"@{escaped}(?![\w.-]|:[\w.-])"
        bare = rf"{_GREETING}{escaped}\s*(?:[,:;!?]|[-–—](?!\w)|$)"
        if re.match(rf"(?:{at}|{bare})", text, re.IGNORECASE):
            return True
    return False


def replied_to(relates: dict[str, Any]) -> str | None:
    """The event a message answers with the client's reply function, or None.

    In a thread, clients also put the thread's latest event in ``m.in_reply_to`` for clients
    that know no threads, marked ``is_falling_back``: that is no reply the person chose."""
    reply = relates.get("m.in_reply_to")
    if not isinstance(reply, dict):
        return None
    if relates.get("rel_type") == "m.thread" and relates.get("is_falling_back") is True:
        return None
    event_id = reply.get("event_id")
    valid = isinstance(event_id, str) and event_id.startswith("$") and len(event_id) <= 255
    return event_id if valid else None


_MX_REPLY = re.compile(r"<mx-reply>.*?</mx-reply>", re.S | re.I)
_FALLBACK_START = re.compile(r"^> (?:\* )?<@[^>\s]+:[^>\s]+>")


def strip_reply_fallback(body: str, formatted: str | None) -> tuple[str, str | None]:
    """A reply without the quote of the message it answers, which many clients still put
    in front ("> <@bot:…> Meinten Sie …\n\n2"): the reply is the person's own words only,
    so that "2" or "!übernehmen 5" is read as what it is."""
    lines = body.split("\n")
    # Only a real fallback: it starts with the quoted sender ("> <@bob:…> …"), or the HTML
    # has the <mx-reply> block. A person's own leading quote stays.
    if not (_FALLBACK_START.match(lines[0]) or (formatted and _MX_REPLY.search(formatted))):
        return body, formatted
    quoted = 0
    while quoted < len(lines) and lines[quoted].startswith(">"):
        quoted += 1
    if quoted:
        if quoted < len(lines) and not lines[quoted].strip():
            quoted += 1
        body = "\n".join(lines[quoted:])
    if formatted is not None:
        formatted = _MX_REPLY.sub("", formatted, count=1)
    return body, formatted


class HistoryUnavailable(Exception):
    """The homeserver did not show a room's history (rate limit, server error)."""

    def __init__(self, code: str, message: str, retry_after_ms: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.retry_after_ms = retry_after_ms


class RoomCreationFailed(Exception):
    def __init__(self, code: str, message: str, retry_after_ms: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.retry_after_ms = retry_after_ms
