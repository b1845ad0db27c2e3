"""End-to-end encryption beyond what nio does on its own.

nio encrypts and decrypts with the device's Olm account; two things it leaves to us:

* **Cross-signing.** Element shows a device that is not signed by its owner's
  self-signing key as "unverified", and people are (rightly) told not to trust those. The
  bot therefore creates its own master, self-signing and user-signing keys, uploads them and
  signs its device, so one verification of the bot's *account* covers every device it will
  ever have. The private keys are kept encrypted with a key derived from the pickle key;
  the master seed is handed to the admin once as a recovery key.
* **Late decryption.** A message can arrive before the room key that opens it (the key
  travels separately as a to-device message, and a sender's client may not know the bot's
  device yet). Such messages are kept on disk with the crypto store, retried after every
  sync, and only after a grace period is the sender told that the bot could not read them.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nio import AsyncClient, MegolmEvent
from nio.exceptions import EncryptionError, LocalProtocolError

log = logging.getLogger(__name__)

CROSS_SIGNING_FILE = "cross_signing.json"
RECOVERY_KEY_FILE = "recovery-key.txt"
UNDECRYPTED_DB = "undecrypted.db"
CLIENT_API = "/_matrix/client/v3"

# -- canonical JSON and Ed25519 signatures --------------------------------------------------


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """The Matrix canonical form: sorted keys, no whitespace, UTF-8 (not \\u escapes).

    Signatures are over these exact bytes, so one differing space makes a valid signature
    look forged; floats are not allowed in signed Matrix JSON.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def b64encode(data: bytes) -> str:
    """Unpadded standard base64, the encoding Matrix uses for keys and signatures."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def b64decode(text: str) -> bytes:
    """Decode unpadded (or padded) standard or URL-safe base64."""
    text = text.strip().replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def signable(value: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a JSON object that a signature covers."""
    return {k: v for k, v in value.items() if k not in ("signatures", "unsigned")}


class SigningKey:
    """An Ed25519 key pair kept as its 32-byte seed (which is all that needs storing)."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed has 32 bytes")
        self.seed = seed
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        raw = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public = b64encode(raw)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(secrets.token_bytes(32))

    @property
    def key_id(self) -> str:
        """Cross-signing keys are named by their own public key: ``ed25519:<public>``."""
        return f"ed25519:{self.public}"

    def sign(self, data: bytes) -> str:
        return b64encode(self._private.sign(data))

    def sign_json(
        self, value: Mapping[str, Any], user_id: str, key_id: str | None = None
    ) -> dict[str, Any]:
        """A copy of ``value`` with this key's signature added; other signatures are kept."""
        signed = dict(value)
        unsigned = signed.pop("unsigned", None)
        signatures = {u: dict(s) for u, s in (signed.pop("signatures", None) or {}).items()}
        signature = self.sign(canonical_json(signed))
        signatures.setdefault(user_id, {})[key_id or self.key_id] = signature
        signed["signatures"] = signatures
        if unsigned is not None:
            signed["unsigned"] = unsigned
        return signed


def verify_json(value: Mapping[str, Any], user_id: str, key_id: str, public: str) -> bool:
    """Whether ``value`` carries a valid signature by ``public`` under ``user_id``/``key_id``."""
    try:
        signature = value["signatures"][user_id][key_id]
        key = Ed25519PublicKey.from_public_bytes(b64decode(public))
        key.verify(b64decode(signature), canonical_json(signable(value)))
    except (KeyError, TypeError, ValueError, InvalidSignature):
        return False
    return True


# -- recovery key ---------------------------------------------------------------------------

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
# Deliberately not Element's "security key" prefix (0x8B 0x01): this key restores the bot's
# master signing key, it does not open server-side secret storage, and Element must not
# accept it as if it did.
_RECOVERY_PREFIX = b"\x4c\x42"


def _b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, rest = divmod(number, 58)
        out = _B58[rest] + out
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + out


def _b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        index = _B58.find(char)
        if index < 0:
            raise ValueError(f"„{char}“ kommt in einem Wiederherstellungsschlüssel nicht vor")
        number = number * 58 + index
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    zeros = len(text) - len(text.lstrip("1"))
    return b"\0" * zeros + body


def encode_recovery_key(seed: bytes) -> str:
    """Base58 in groups of four, with a prefix and a parity byte that catch typos."""
    data = _RECOVERY_PREFIX + seed
    parity = 0
    for byte in data:
        parity ^= byte
    text = _b58encode(data + bytes([parity]))
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def decode_recovery_key(text: str) -> bytes:
    """The master seed from a recovery key; ValueError (German) when it was mistyped."""
    data = _b58decode("".join(text.split()))
    parity = 0
    for byte in data:
        parity ^= byte
    if len(data) != len(_RECOVERY_PREFIX) + 33 or not data.startswith(_RECOVERY_PREFIX):
        raise ValueError("das ist kein Wiederherstellungsschlüssel des Lotsenbots")
    if parity != 0:
        raise ValueError("Prüfsumme stimmt nicht – bitte den Schlüssel genau abschreiben")
    return data[len(_RECOVERY_PREFIX) : -1]


# -- the encrypted key file -----------------------------------------------------------------


@dataclass(frozen=True)
class CrossSigningKeys:
    master: SigningKey
    self_signing: SigningKey
    user_signing: SigningKey

    @classmethod
    def generate(cls, master: SigningKey | None = None) -> CrossSigningKeys:
        return cls(master or SigningKey.generate(), SigningKey.generate(), SigningKey.generate())

    def publics(self) -> dict[str, str]:
        return {
            "master": self.master.public,
            "self_signing": self.self_signing.public,
            "user_signing": self.user_signing.public,
        }


class KeyFileError(Exception):
    """The key file exists but cannot be opened (wrong pickle key, damaged, other account)."""


class KeyVault:
    """The cross-signing private keys on disk, encrypted with a key from the pickle key.

    AES-256-GCM with a key derived by scrypt, because the pickle key may be a passphrase an
    admin typed into the config rather than random bytes. The public keys and the user id
    are stored in clear (and bound to the ciphertext as associated data) so that status
    checks need no decryption and a file copied to another account is refused.
    """

    SCRYPT_N = 2**14

    def __init__(self, path: Path, pickle_key: str, user_id: str) -> None:
        self.path = path
        self.pickle_key = pickle_key
        self.user_id = user_id

    def exists(self) -> bool:
        return self.path.exists()

    def _aead(self, salt: bytes) -> AESGCM:
        kdf = Scrypt(salt=salt, length=32, n=self.SCRYPT_N, r=8, p=1)
        return AESGCM(kdf.derive(self.pickle_key.encode("utf-8")))

    def save(self, keys: CrossSigningKeys) -> None:
        salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
        publics = keys.publics()
        plain = json.dumps({name: b64encode(getattr(keys, name).seed) for name in publics})
        aad = canonical_json({"user_id": self.user_id, "public": publics})
        sealed = self._aead(salt).encrypt(nonce, plain.encode("utf-8"), aad)
        record = {
            "version": 1,
            "user_id": self.user_id,
            "public": publics,
            "salt": b64encode(salt),
            "nonce": b64encode(nonce),
            "ciphertext": b64encode(sealed),
        }
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    def public_keys(self) -> dict[str, str] | None:
        """The stored public keys, without touching the secrets; None if there is no file."""
        try:
            record = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise KeyFileError(f"{self.path.name} ist beschädigt") from exc
        public = record.get("public")
        return dict(public) if isinstance(public, dict) else None

    def load(self) -> CrossSigningKeys | None:
        try:
            record = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise KeyFileError(f"{self.path.name} ist beschädigt") from exc
        if record.get("user_id") != self.user_id:
            raise KeyFileError(f"{self.path.name} gehört zu {record.get('user_id')}")
        aad = canonical_json({"user_id": self.user_id, "public": record["public"]})
        try:
            plain = self._aead(b64decode(record["salt"])).decrypt(
                b64decode(record["nonce"]), b64decode(record["ciphertext"]), aad
            )
        except (InvalidTag, KeyError, ValueError) as exc:
            raise KeyFileError(
                f"{self.path.name} lässt sich nicht entschlüsseln (anderer Pickle-Schlüssel?)"
            ) from exc
        seeds = json.loads(plain)
        keys = CrossSigningKeys(
            *(SigningKey(b64decode(seeds[n])) for n in ("master", "self_signing", "user_signing"))
        )
        if keys.publics() != record["public"]:
            raise KeyFileError(f"{self.path.name}: öffentliche und private Schlüssel passen nicht")
        return keys


# -- what the homeserver says about an account --------------------------------------------


def cross_signing_key(user_id: str, usage: str, key: SigningKey) -> dict[str, Any]:
    return {"user_id": user_id, "usage": [usage], "keys": {key.key_id: key.public}}


def upload_body(user_id: str, keys: CrossSigningKeys) -> dict[str, Any]:
    """The body of ``keys/device_signing/upload``: the two sub-keys signed by the master."""
    master = cross_signing_key(user_id, "master", keys.master)
    ssk = keys.master.sign_json(
        cross_signing_key(user_id, "self_signing", keys.self_signing), user_id
    )
    usk = keys.master.sign_json(
        cross_signing_key(user_id, "user_signing", keys.user_signing), user_id
    )
    return {"master_key": master, "self_signing_key": ssk, "user_signing_key": usk}


def _single_key(key_object: Any, usage: str, user_id: str) -> tuple[str, str] | None:
    """(key id, public key) of a cross-signing key object, if it is well-formed."""
    if not isinstance(key_object, dict) or key_object.get("user_id") != user_id:
        return None
    if usage not in (key_object.get("usage") or []):
        return None
    keys = key_object.get("keys")
    if not isinstance(keys, dict) or len(keys) != 1:
        return None
    ((key_id, public),) = keys.items()
    if not isinstance(public, str) or key_id != f"ed25519:{public}":
        return None
    return key_id, public


@dataclass(frozen=True)
class ChainStatus:
    """The cross-signing chain of one device as the homeserver publishes it."""

    master: str | None  # public master key on the server, if any
    self_signing: str | None
    self_signing_valid: bool  # the self-signing key carries a valid master signature
    device_signed: bool  # the device keys carry a valid self-signing signature
    device_ed25519: str | None

    @property
    def complete(self) -> bool:
        return self.self_signing_valid and self.device_signed


def check_chain(query: Mapping[str, Any], user_id: str, device_id: str) -> ChainStatus:
    """Verify master → self-signing → device from a ``keys/query`` response body."""
    master = _single_key((query.get("master_keys") or {}).get(user_id), "master", user_id)
    ssk_object = (query.get("self_signing_keys") or {}).get(user_id)
    ssk = _single_key(ssk_object, "self_signing", user_id)
    ssk_valid = bool(
        master
        and ssk
        and isinstance(ssk_object, Mapping)
        and verify_json(ssk_object, user_id, *master)
    )
    device = ((query.get("device_keys") or {}).get(user_id) or {}).get(device_id)
    device_key = None
    device_signed = False
    if isinstance(device, dict) and device.get("device_id") == device_id:
        device_key = (device.get("keys") or {}).get(f"ed25519:{device_id}")
        device_signed = bool(ssk_valid and ssk and verify_json(device, user_id, *ssk))
    return ChainStatus(
        master=master[1] if master else None,
        self_signing=ssk[1] if ssk else None,
        self_signing_valid=ssk_valid,
        device_signed=device_signed,
        device_ed25519=device_key if isinstance(device_key, str) else None,
    )


# -- talking to the homeserver --------------------------------------------------------------


class CrossSigningError(Exception):
    """Cross-signing could not be set up; the message says what the admin can do."""


class ForeignKeys(CrossSigningError):
    """The account has cross-signing keys this bot does not hold."""


async def api_call(
    client: AsyncClient, method: str, path: str, body: Mapping[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    """One authenticated JSON request; network errors propagate to the caller."""
    headers = {"Authorization": f"Bearer {client.access_token}", "Content-Type": "application/json"}
    data = json.dumps(body) if body is not None else None
    response = await client.send(method, CLIENT_API + path, data, headers)
    try:
        payload = await response.json(content_type=None)
    except ValueError:
        payload = {}
    finally:
        response.release()
    return response.status, payload if isinstance(payload, dict) else {}


@dataclass(frozen=True)
class BootstrapResult:
    keys: CrossSigningKeys
    recovery_key: str | None  # only when a new master key was made
    chain: ChainStatus


class CrossSigning:
    """Sets up and checks the bot's cross-signing identity for one logged-in device."""

    def __init__(self, client: AsyncClient, vault: KeyVault, password: str | None) -> None:
        self.client = client
        self.vault = vault
        self.password = password

    @property
    def user_id(self) -> str:
        return str(self.client.user_id)

    @property
    def device_id(self) -> str:
        return str(self.client.device_id)

    async def query(self) -> dict[str, Any]:
        status, body = await api_call(
            self.client, "POST", "/keys/query", {"device_keys": {self.user_id: []}}
        )
        if status != 200:
            raise ConnectionError(f"keys/query: HTTP {status} {body.get('errcode', '')}")
        return body

    async def chain(self) -> ChainStatus:
        return check_chain(await self.query(), self.user_id, self.device_id)

    async def ensure(self) -> tuple[ChainStatus, str | None]:
        """On start: create keys if the account has none, (re)sign this device if needed.

        Returns the chain and, when a new master key was made, its recovery key. Raises
        ForeignKeys when someone else (Element, an earlier installation) owns the account's
        cross-signing identity — replacing it is the admin's decision.
        """
        query = await self.query()
        chain = check_chain(query, self.user_id, self.device_id)
        held = self.vault.public_keys()
        if chain.master is None:
            keys = self.vault.load() if held else None
            result = await self.bootstrap(keys=keys)
            return result.chain, result.recovery_key
        if held is None or held.get("master") != chain.master:
            raise ForeignKeys(chain.master)
        if held.get("self_signing") != chain.self_signing or not chain.self_signing_valid:
            raise ForeignKeys(chain.master)
        if not chain.device_signed:
            keys = self.vault.load()
            assert keys is not None
            await self.sign_device(keys, query)
            chain = await self.chain()
        return chain, None

    async def bootstrap(
        self, *, reset: bool = False, keys: CrossSigningKeys | None = None
    ) -> BootstrapResult:
        """Upload a cross-signing identity and sign this device with it.

        ``keys`` re-uploads known keys (for example a master restored from the recovery
        key with fresh sub-keys); otherwise new keys are made. Unless ``reset`` is given,
        an existing identity the bot does not hold is left alone.
        """
        query = await self.query()
        existing = check_chain(query, self.user_id, self.device_id)
        if (
            existing.master
            and not reset
            and (keys is None or keys.master.public != existing.master)
        ):
            raise ForeignKeys(existing.master)
        new_master = keys is None or keys.master.public != existing.master
        keys = keys or CrossSigningKeys.generate()
        body = upload_body(self.user_id, keys)
        if not new_master:
            body.pop("master_key")  # the server keeps it; Synapse fails on re-inserting it
        await self._upload_with_auth("/keys/device_signing/upload", body)
        self.vault.save(keys)
        query = await self.query()
        await self.sign_device(keys, query)
        chain = await self.chain()
        if chain.master != keys.master.public or not chain.complete:
            raise CrossSigningError(
                "Der Homeserver zeigt die neue Signaturkette nicht vollständig an "
                f"(Master {chain.master}, Kette gültig: {chain.complete})"
            )
        recovery = encode_recovery_key(keys.master.seed) if new_master else None
        return BootstrapResult(keys, recovery, chain)

    async def sign_device(self, keys: CrossSigningKeys, query: Mapping[str, Any]) -> None:
        """Sign this device's keys, exactly as the server holds them, with the SSK."""
        device = ((query.get("device_keys") or {}).get(self.user_id) or {}).get(self.device_id)
        if not isinstance(device, dict):
            raise CrossSigningError(
                f"Die Geräteschlüssel von {self.device_id} sind noch nicht auf dem Homeserver"
            )
        olm = self.client.olm
        own = olm.account.identity_keys["ed25519"] if olm is not None else None
        if own is not None and (device.get("keys") or {}).get(f"ed25519:{self.device_id}") != own:
            raise CrossSigningError(
                f"Der Homeserver nennt für Gerät {self.device_id} einen anderen Schlüssel als "
                "den, den der Bot besitzt – Signatur verweigert"
            )
        signed = keys.self_signing.sign_json(signable(device), self.user_id)
        sig_only = {
            **signed,
            "signatures": {
                self.user_id: {
                    keys.self_signing.key_id: signed["signatures"][self.user_id][
                        keys.self_signing.key_id
                    ]
                }
            },
        }
        status, body = await api_call(
            self.client,
            "POST",
            "/keys/signatures/upload",
            {self.user_id: {self.device_id: sig_only}},
        )
        failures = body.get("failures") or {}
        if status != 200 or failures:
            raise CrossSigningError(f"Signatur abgelehnt: HTTP {status} {failures or body}")

    async def _upload_with_auth(self, path: str, body: dict[str, Any]) -> None:
        """POST with user-interactive auth: try bare, then answer the 401 with the password."""
        status, answer = await api_call(self.client, "POST", path, body)
        if status == 200:
            return  # first upload on a fresh account needs no UIA (MSC3967)
        if status != 401 or "session" not in answer:
            raise CrossSigningError(f"Hochladen abgelehnt: HTTP {status} {answer}")
        flows = [flow.get("stages") for flow in answer.get("flows") or []]
        if ["m.login.password"] not in flows:
            raise CrossSigningError(
                "Der Homeserver verlangt eine Bestätigung, die der Bot nicht geben kann "
                f"({flows}); bitte die Schlüssel über die Kontoverwaltung zurücksetzen"
            )
        if not self.password:
            raise CrossSigningError(
                "Zum Hochladen der Schlüssel ist das Passwort des Bot-Kontos nötig "
                "([matrix] password oder LOTSENBOT_MATRIX_PASSWORD)"
            )
        auth = {
            "type": "m.login.password",
            "session": answer["session"],
            "identifier": {"type": "m.id.user", "user": self.user_id},
            "password": self.password,
        }
        status, answer = await api_call(self.client, "POST", path, {**body, "auth": auth})
        if status != 200:
            raise CrossSigningError(
                f"Hochladen abgelehnt: HTTP {status} "
                f"{answer.get('errcode', '')} {answer.get('error', '')}"
            )


def write_recovery_file(folder: Path, user_id: str, recovery_key: str) -> Path:
    """Leave the recovery key for the admin when bootstrap ran unattended (no terminal)."""
    path = folder / RECOVERY_KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(f"Wiederherstellungsschlüssel für {user_id}:\n{recovery_key}\n")
    return path


# -- messages that cannot be decrypted yet ------------------------------------------------


@dataclass(frozen=True)
class KeptEvent:
    event_id: str
    room_id: str
    sender: str
    source: dict[str, Any]
    first_seen: float  # unix seconds
    notify: bool  # whether the sender is told if it stays unreadable
    notified: bool

    def as_megolm(self) -> MegolmEvent:
        event = MegolmEvent.from_dict(self.source)
        if not isinstance(event, MegolmEvent):
            raise ValueError(f"{self.event_id} is no longer a valid encrypted event")
        event.room_id = self.room_id
        return event


class UndecryptedStore:
    """Encrypted events waiting for their room key, kept next to the crypto store.

    They live with the keys that will open them (not in the bot database): only
    ciphertext is stored, and the rows are written before the sync token moves on, so a
    restart loses none of them.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None

    async def open(self) -> aiosqlite.Connection:
        if self._conn is None:
            conn = await aiosqlite.connect(str(self.path), isolation_level=None)
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS undecrypted ("
                " event_id TEXT PRIMARY KEY, room_id TEXT NOT NULL, sender TEXT NOT NULL,"
                " source TEXT NOT NULL, first_seen REAL NOT NULL,"
                " notify INTEGER NOT NULL, notified INTEGER NOT NULL DEFAULT 0)"
            )
            self._conn = conn
        return self._conn

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def add(self, events: Iterable[KeptEvent]) -> None:
        conn = await self.open()
        await conn.executemany(
            "INSERT OR IGNORE INTO undecrypted (event_id, room_id, sender, source, first_seen,"
            " notify, notified) VALUES (?, ?, ?, ?, ?, ?, 0)",
            [
                (e.event_id, e.room_id, e.sender, json.dumps(e.source), e.first_seen, int(e.notify))
                for e in events
            ],
        )

    async def all(self) -> list[KeptEvent]:
        conn = await self.open()
        async with conn.execute(
            "SELECT event_id, room_id, sender, source, first_seen, notify, notified"
            " FROM undecrypted ORDER BY first_seen, rowid"
        ) as cursor:
            rows = await cursor.fetchall()
        return [
            KeptEvent(r[0], r[1], r[2], json.loads(r[3]), r[4], bool(r[5]), bool(r[6]))
            for r in rows
        ]

    async def remove(self, event_ids: Iterable[str]) -> None:
        conn = await self.open()
        await conn.executemany(
            "DELETE FROM undecrypted WHERE event_id = ?", [(e,) for e in event_ids]
        )

    async def mark_notified(self, event_ids: Iterable[str]) -> None:
        conn = await self.open()
        await conn.executemany(
            "UPDATE undecrypted SET notified = 1 WHERE event_id = ?", [(e,) for e in event_ids]
        )


@dataclass(frozen=True)
class RetryOutcome:
    decrypted: list[tuple[KeptEvent, Any]]  # (kept, decrypted nio event)
    to_notify: dict[str, list[KeptEvent]]  # room -> overdue events nobody was told about
    expired: list[str]


class LateDecryption:
    """Keeps undecryptable events, retries them, and decides when to tell the sender.

    ``notice_after`` is how long a room key may take; ``max_age`` is when a kept event is
    given up entirely. Events that were already old when they arrived (history of a room the
    bot just joined) are kept silently: nobody is waiting for an answer to them.
    """

    FRESH_SECONDS = 600.0

    def __init__(
        self,
        client: AsyncClient,
        store: UndecryptedStore,
        *,
        notice_after: float,
        max_age: float = 7 * 86400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.store = store
        self.notice_after = notice_after
        self.max_age = max_age
        self.clock = clock

    async def keep(self, items: Iterable[tuple[str, MegolmEvent]]) -> list[KeptEvent]:
        """Persist new undecryptable events (before the sync token moves on)."""
        now = self.clock()
        kept: list[KeptEvent] = []
        for room_id, event in items:
            age = now - event.server_timestamp / 1000
            if age > self.max_age:
                continue
            kept.append(
                KeptEvent(
                    event.event_id,
                    room_id,
                    event.sender,
                    dict(event.source),
                    now,
                    age <= self.FRESH_SECONDS,
                    False,
                )
            )
        if not kept:
            return []
        await self.store.add(kept)
        for item in kept:
            log.info(
                "Ereignis %s in %s noch nicht entschlüsselbar, warte auf den Schlüssel",
                item.event_id,
                item.room_id,
            )
        return kept

    async def request_keys(self, items: Iterable[KeptEvent]) -> None:
        """Ask the bot's other devices (if an admin has any) to forward the missing keys.

        nio accepts forwarded keys only from the account's own verified devices, so this
        helps when an admin runs Element on the bot account; the sender's own key delivery
        is what usually arrives.
        """
        for item in items:
            try:
                await self.client.request_room_key(item.as_megolm())
            except (LocalProtocolError, ValueError):
                pass  # already asked for this session
            except Exception as exc:  # a courtesy; never fail the sync over it
                log.debug("Schlüsselanfrage für %s fehlgeschlagen: %s", item.event_id, exc)

    def _try_decrypt(self, item: KeptEvent) -> Any | None:
        """The decrypted event, or None while its room key is still missing.

        Looking the session up first keeps a long wait cheap and quiet: nio logs a warning
        for every failed decryption attempt, and this runs after every sync.
        """
        olm = self.client.olm
        try:
            megolm = item.as_megolm()
            if olm is None or not olm.inbound_group_store.get(
                item.room_id, megolm.sender_key, megolm.session_id
            ):
                return None
            event = self.client.decrypt_event(megolm)
        except (EncryptionError, ValueError, KeyError, TypeError):
            return None
        return None if isinstance(event, MegolmEvent) else event

    async def retry(self) -> RetryOutcome:
        """Try every kept event again; drop what expired; report what opened and what is overdue.

        Opened events stay stored until :meth:`done`, so a crash before they reach the inbox
        does not lose them.
        """
        now = self.clock()
        decrypted: list[tuple[KeptEvent, Any]] = []
        overdue: dict[str, list[KeptEvent]] = {}
        expired: list[str] = []
        for item in await self.store.all():
            event = self._try_decrypt(item)
            if event is not None:
                decrypted.append((item, event))
            elif now - item.first_seen > self.max_age:
                expired.append(item.event_id)
            elif item.notify and not item.notified and now - item.first_seen >= self.notice_after:
                overdue.setdefault(item.room_id, []).append(item)
        if expired:
            await self.store.remove(expired)
            log.warning(
                "%d Ereignisse nach %.0f Tagen ohne Schlüssel aufgegeben",
                len(expired),
                self.max_age / 86400,
            )
        return RetryOutcome(decrypted, overdue, expired)

    async def done(self, items: Iterable[KeptEvent]) -> None:
        """Forget events once their decrypted form is safely in the inbox."""
        items = list(items)
        await self.store.remove(i.event_id for i in items)
        for item in items:
            log.info("Ereignis %s nachträglich entschlüsselt", item.event_id)

    async def seconds_to_next_notice(self) -> float | None:
        """When the next notice falls due, so the sync loop need not sleep past it."""
        waiting = [i for i in await self.store.all() if i.notify and not i.notified]
        if not waiting:
            return None
        return max(0.0, min(i.first_seen for i in waiting) + self.notice_after - self.clock())
