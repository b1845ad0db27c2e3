"""A throwaway Synapse homeserver on loopback, for the test suite and `lotsenbot demo`.

The integration tests and the demo both need a *real* homeserver (the design forbids mocked
Matrix in integration tests), but neither may need a network, a domain or an administrator.
This module writes a minimal Synapse configuration into one folder (SQLite, no federation,
bound to 127.0.0.1 only), runs `python -m synapse.app.homeserver` as a child process and
offers the two things tests need from a server operator: creating accounts (shared-secret
registration) and logging in.

Synapse itself is an optional dependency (the `dev` and `demo` extras); importing this module
does not import Synapse, only starting a server needs it.

Process hygiene matters more than anything else here: a leaked Synapse keeps a port and a
SQLite lock and confuses the next run. Every child runs in its own session, dies with its
parent on Linux (PR_SET_PDEATHSIG), is terminated at interpreter exit, and is only ever
signalled by its own pid.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import copy
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import aiohttp
import yaml

__all__ = [
    "DEFAULT_SERVER_NAME",
    "RateLimits",
    "Synapse",
    "SynapseError",
    "build_config",
    "deep_merge",
    "free_port",
    "registration_mac",
    "relaxed_rate_limits",
]

DEFAULT_SERVER_NAME = "lotsen.test"
"""`.test` is reserved (RFC 2606) and never resolves, which is exactly what we want: with
federation switched off the server name only has to be syntactically valid."""

LOOPBACK = "127.0.0.1"

RateLimits = Literal["relaxed", "default"] | Mapping[str, Any]

CONFIG_FILE = "homeserver.yaml"
LOG_CONFIG_FILE = "log.config.yaml"
LOG_FILE = "homeserver.log"
CONSOLE_LOG_FILE = "console.log"
SIGNING_KEY_FILE = "signing.key"
STATE_FILE = "devserver.json"
DATABASE_FILE = "homeserver.db"
MEDIA_DIR = "media_store"

# Every rate limiter Synapse 1.16x reads (synapse/config/ratelimiting.py). "relaxed" sets all
# of them so high that no test can trip one by accident; a test that wants to see
# M_LIMIT_EXCEEDED tightens exactly one of them through the dict form.
_RELAXED_LIMIT = {"per_second": 10_000, "burst_count": 100_000}
_RATE_LIMIT_KEYS: tuple[str, ...] = (
    "rc_message",
    "rc_registration",
    "rc_registration_token_validity",
    "rc_login.address",
    "rc_login.account",
    "rc_login.failed_attempts",
    "rc_admin_redaction",
    "rc_joins.local",
    "rc_joins.remote",
    "rc_joins_per_room",
    "rc_key_requests",
    "rc_3pid_validation",
    "rc_invites.per_room",
    "rc_invites.per_user",
    "rc_invites.per_issuer",
    "rc_third_party_invite",
    "rc_media_create",
    "rc_presence.per_user",
    "rc_delayed_event_mgmt",
    "rc_room_creation",
    "rc_reports",
    "rc_user_directory",
    "rc_profile",
)


class SynapseError(RuntimeError):
    """Synapse did not start, or an admin call failed; the message carries the log tail."""


# --------------------------------------------------------------------------- pure helpers


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge nested mappings so that an override of one rate limiter keeps its siblings.

    Dicts are merged key by key; anything else in `override` replaces the value in `base`.
    Neither input is modified.
    """
    merged: dict[str, Any] = copy.deepcopy(dict(base))
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def relaxed_rate_limits() -> dict[str, Any]:
    """Rate limit settings that no test or demo session can reach.

    Dotted keys from Synapse's parser ("rc_login.address") become nested dicts, which is how
    Synapse reads them from YAML.
    """
    settings: dict[str, Any] = {}
    for dotted in _RATE_LIMIT_KEYS:
        node = settings
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = dict(_RELAXED_LIMIT)
    return settings


def rate_limit_config(rate_limits: RateLimits) -> dict[str, Any]:
    """Translate the `rate_limits` parameter into config keys.

    A dict is applied on top of the relaxed settings: a test that tightens `rc_message` wants
    to see that limiter fire, not to trip over the (very low) default login limit on the way.
    """
    if rate_limits == "relaxed":
        return relaxed_rate_limits()
    if rate_limits == "default":
        return {}
    if isinstance(rate_limits, Mapping):
        return deep_merge(relaxed_rate_limits(), rate_limits)
    raise ValueError(f"rate_limits must be 'relaxed', 'default' or a dict, not {rate_limits!r}")


def registration_mac(
    shared_secret: str, nonce: str, username: str, password: str, admin: bool
) -> str:
    """HMAC-SHA1 that proves knowledge of `registration_shared_secret` to Synapse.

    The message is nonce, username, password and "admin"/"notadmin", separated by NUL bytes,
    as Synapse's shared-secret registration API specifies.
    """
    mac = hmac.new(shared_secret.encode("utf-8"), digestmod=hashlib.sha1)
    parts = [nonce, username, password, "admin" if admin else "notadmin"]
    mac.update(b"\x00".join(part.encode("utf-8") for part in parts))
    return mac.hexdigest()


def make_signing_key() -> str:
    """A fresh ed25519 signing key line in Synapse's file format.

    Synapse's file format is `ed25519 <version> <unpadded base64 seed>`; writing it ourselves
    saves a `--generate-keys` round trip (a second Python start-up) on every fresh server.
    """
    seed = base64.b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")
    version = "a_" + secrets.token_hex(2)
    return f"ed25519 {version} {seed}\n"


def free_port(preferred: int | None = None, host: str = LOOPBACK) -> int:
    """A TCP port on `host` that nobody listens on right now.

    `preferred` is returned when it can be bound (the demo likes a stable 8008); otherwise the
    kernel picks one via port 0. There is an unavoidable window between closing our probe
    socket and Synapse binding the port; `Synapse.start` retries with a new port when it
    loses that race.
    """
    if preferred is not None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, preferred))
            except OSError:
                pass
            else:
                return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def build_config(
    folder: Path,
    *,
    server_name: str,
    port: int,
    registration_shared_secret: str,
    macaroon_secret_key: str,
    form_secret: str,
    rate_limits: RateLimits = "relaxed",
    extra_config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The complete homeserver.yaml content as a dict.

    Kept pure (no I/O) so that the choices below can be unit-tested without starting Synapse.
    Paths are absolute because Synapse resolves relative paths against its working directory,
    not against the config file.
    """
    folder = folder.resolve()
    config: dict[str, Any] = {
        "server_name": server_name,
        "public_baseurl": f"http://{LOOPBACK}:{port}/",
        "listeners": [
            {
                "port": port,
                "bind_addresses": [LOOPBACK],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                # No "federation" resource: nothing can reach us from outside anyway.
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {
            "name": "sqlite3",
            "args": {"database": str(folder / DATABASE_FILE)},
        },
        "log_config": str(folder / LOG_CONFIG_FILE),
        "media_store_path": str(folder / MEDIA_DIR),
        "signing_key_path": str(folder / SIGNING_KEY_FILE),
        "registration_shared_secret": registration_shared_secret,
        "macaroon_secret_key": macaroon_secret_key,
        "form_secret": form_secret,
        "report_stats": False,
        "enable_registration": False,
        # An empty whitelist forbids outgoing federation to every server.
        "federation_domain_whitelist": [],
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "presence": {"enabled": False},
        "url_preview_enabled": False,
        "enable_metrics": False,
        "serve_server_wellknown": False,
    }
    config.update(rate_limit_config(rate_limits))
    if extra_config:
        config = deep_merge(config, extra_config)
    return config


def build_log_config(log_file: Path, level: str) -> dict[str, Any]:
    """Python logging config for Synapse: one file, nothing on the console."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"},
        },
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "filename": str(log_file),
                "formatter": "plain",
                "encoding": "utf-8",
            }
        },
        "root": {"level": level, "handlers": ["file"]},
    }


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- process hygiene

_LIVE_PROCESSES: dict[int, subprocess.Popen[bytes]] = {}
"""Children started by this interpreter, by pid: the atexit hook must find them without any
`Synapse` object (a test run interrupted mid-fixture never reaches the fixture teardown)."""


def _kill_leftovers() -> None:
    for pid, process in list(_LIVE_PROCESSES.items()):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        _LIVE_PROCESSES.pop(pid, None)


atexit.register(_kill_leftovers)


def _die_with_parent(parent_pid: int) -> Any:
    """Pre-exec hook: ask Linux to SIGTERM the child when this process dies.

    atexit does not run on SIGKILL or a crashed interpreter; the kernel's parent-death signal
    does. Note that it is tied to the spawning *thread*: call `Synapse.start` from the thread
    that keeps running (the event loop thread), not from a short-lived worker.
    """
    if not sys.platform.startswith("linux"):
        return None

    def hook() -> None:
        import ctypes

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent_pid:  # parent already gone before prctl took effect
            os._exit(1)

    return hook


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\x00", b" ").decode("utf-8", errors="replace")


# --------------------------------------------------------------------------- the server


class Synapse:
    """One Synapse homeserver living in `folder`, started and stopped by this process.

    Use as `async with Synapse(tmp_path) as hs: ...` or with explicit `start()`/`stop()`.
    Stopping keeps the folder, so `stop()` followed by `start()` brings back the same
    accounts, rooms and port — which is what outage tests need.

    `rate_limits`: "relaxed" (default) makes every limiter unreachable, "default" keeps
    Synapse's own values, a dict is merged over the relaxed values (for example
    `{"rc_message": {"per_second": 0.5, "burst_count": 2}}`). `extra_config` is merged into
    the generated homeserver.yaml last and so can override anything.
    """

    def __init__(
        self,
        folder: Path | str,
        *,
        server_name: str = DEFAULT_SERVER_NAME,
        port: int | None = None,
        rate_limits: RateLimits = "relaxed",
        extra_config: Mapping[str, Any] | None = None,
        startup_timeout: float = 60.0,
        stop_timeout: float = 15.0,
        log_level: str = "WARNING",
    ) -> None:
        self.folder = Path(folder).resolve()
        self.server_name = server_name
        self.rate_limits: RateLimits = rate_limits
        self.extra_config: dict[str, Any] = dict(extra_config or {})
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.log_level = log_level
        self._fixed_port = port is not None
        self._port: int | None = port
        self._process: subprocess.Popen[bytes] | None = None
        self._http: aiohttp.ClientSession | None = None
        self.last_start_seconds: float | None = None

    # ----------------------------------------------------------------- properties

    @property
    def port(self) -> int:
        if self._port is None:
            raise SynapseError("the port is chosen on the first start()")
        return self._port

    @property
    def url(self) -> str:
        """Base URL for Matrix clients, e.g. http://127.0.0.1:41234."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def config_path(self) -> Path:
        return self.folder / CONFIG_FILE

    @property
    def log_path(self) -> Path:
        return self.folder / LOG_FILE

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of Synapse's log and console output, for error messages."""
        parts = []
        for name in (LOG_FILE, CONSOLE_LOG_FILE):
            tail = _tail(self.folder / name, lines)
            if tail:
                parts.append(f"--- {name} ---\n{tail}")
        return "\n".join(parts) or "(Synapse wrote no log)"

    @staticmethod
    def running_url(folder: Path | str) -> str | None:
        """URL of a Synapse that another process started in `folder`, if it still runs.

        Lets `lotsenbot chat` find the homeserver of a `lotsenbot demo` running in another
        terminal without the user copying a port around.
        """
        state = _read_state(Path(folder))
        pid, url = state.get("pid"), state.get("url")
        if not isinstance(pid, int) or not isinstance(url, str):
            return None
        config = str(Path(folder).resolve() / CONFIG_FILE)
        if _pid_alive(pid) and config in _cmdline(pid):
            return url
        return None

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Write the config (keeping secrets and data) and wait until clients can connect."""
        if self.running:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / MEDIA_DIR).mkdir(exist_ok=True)
        state = _read_state(self.folder)
        self._refuse_if_foreign_instance(state)
        secrets_ = self._secrets(state)
        signing_key = self.folder / SIGNING_KEY_FILE
        if not signing_key.exists():
            signing_key.write_text(make_signing_key(), encoding="utf-8")
            signing_key.chmod(0o600)

        attempts = 1 if self._fixed_port else 3
        for attempt in range(1, attempts + 1):
            if self._port is None or (attempt > 1 and not self._fixed_port):
                self._port = free_port()
            self._write_config(secrets_)
            try:
                await self._spawn_and_wait()
            except SynapseError:
                if attempt < attempts and "Address already in use" in self.log_tail(200):
                    continue
                raise
            break
        # From now on the URL is part of the server's identity: clients of an outage test
        # reconnect to it, so a restart must not wander to another port.
        self._fixed_port = True
        _write_state(self.folder, {**secrets_, "pid": self.pid, "url": self.url})

    async def stop(self) -> None:
        """SIGTERM our child, wait, SIGKILL only that pid if it will not go; keep the data."""
        if self._http is not None:
            await self._http.close()
            self._http = None
        process = self._process
        self._process = None
        if process is None:
            return
        try:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                if not await _wait_exit(process, self.stop_timeout):
                    process.kill()
                    await _wait_exit(process, 10.0)
        finally:
            _LIVE_PROCESSES.pop(process.pid, None)
            state = _read_state(self.folder)
            state.pop("pid", None)
            with contextlib.suppress(OSError):  # the folder may already be gone
                _write_state(self.folder, state)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    # ----------------------------------------------------------------- admin helpers

    async def register(
        self,
        localpart: str,
        password: str,
        *,
        admin: bool = False,
        displayname: str | None = None,
    ) -> str:
        """Create an account via shared-secret registration; an existing one is fine.

        Idempotent so that fixtures and the demo can call it on every run without first
        asking whether the account is there.
        """
        secret = _read_state(self.folder).get("registration_shared_secret")
        if not isinstance(secret, str):
            raise SynapseError("server was never started in this folder")
        endpoint = f"{self.url}/_synapse/admin/v1/register"
        http = self._session()
        async with http.get(endpoint) as response:
            body = await response.json()
            if response.status != 200:
                raise SynapseError(f"nonce request failed: {response.status} {body}")
        nonce = body["nonce"]
        payload: dict[str, Any] = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": registration_mac(secret, nonce, localpart, password, admin),
        }
        if displayname is not None:
            payload["displayname"] = displayname
        async with http.post(endpoint, json=payload) as response:
            body = await response.json()
            if response.status == 200:
                return str(body["user_id"])
            if body.get("errcode") == "M_USER_IN_USE":
                return self.user_id(localpart)
            raise SynapseError(f"registering {localpart!r} failed: {response.status} {body}")

    async def login(
        self, localpart: str, password: str, *, device_id: str | None = None
    ) -> tuple[str, str]:
        """Password login; returns (access_token, device_id)."""
        payload: dict[str, Any] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": localpart},
            "password": password,
        }
        if device_id is not None:
            payload["device_id"] = device_id
        async with self._session().post(
            f"{self.url}/_matrix/client/v3/login", json=payload
        ) as response:
            body = await response.json()
            if response.status != 200:
                raise SynapseError(f"login of {localpart!r} failed: {response.status} {body}")
            return str(body["access_token"]), str(body["device_id"])

    # ----------------------------------------------------------------- internals

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._http

    def _secrets(self, state: Mapping[str, Any]) -> dict[str, str]:
        """Reuse the folder's secrets so a restarted server keeps its identity."""
        result: dict[str, str] = {}
        for key in ("registration_shared_secret", "macaroon_secret_key", "form_secret"):
            value = state.get(key)
            result[key] = value if isinstance(value, str) else secrets.token_urlsafe(32)
        return result

    def _refuse_if_foreign_instance(self, state: Mapping[str, Any]) -> None:
        """Two Synapses on one SQLite file corrupt each other; fail with a clear reason."""
        pid = state.get("pid")
        if (
            isinstance(pid, int)
            and _pid_alive(pid)
            and str(self.config_path) in _cmdline(pid)
            and pid != self.pid
        ):
            raise SynapseError(
                f"another Synapse (pid {pid}) already runs in {self.folder}; stop it first"
            )

    def _write_config(self, secrets_: Mapping[str, str]) -> None:
        config = build_config(
            self.folder,
            server_name=self.server_name,
            port=self.port,
            registration_shared_secret=secrets_["registration_shared_secret"],
            macaroon_secret_key=secrets_["macaroon_secret_key"],
            form_secret=secrets_["form_secret"],
            rate_limits=self.rate_limits,
            extra_config=self.extra_config,
        )
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        self.config_path.chmod(0o600)
        log_config = build_log_config(self.log_path, self.log_level)
        (self.folder / LOG_CONFIG_FILE).write_text(yaml.safe_dump(log_config), encoding="utf-8")

    async def _spawn_and_wait(self) -> None:
        started = time.monotonic()
        process = _spawn_homeserver(self.config_path, self.folder / CONSOLE_LOG_FILE)
        self._process = process
        try:
            await self._wait_ready(process, started)
        except BaseException:
            await self.stop()
            raise
        self.last_start_seconds = time.monotonic() - started

    async def _wait_ready(self, process: subprocess.Popen[bytes], started: float) -> None:
        deadline = started + self.startup_timeout
        versions = f"{self.url}/_matrix/client/versions"
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as probe:
            while True:
                code = process.poll()
                if code is not None:
                    raise SynapseError(
                        f"Synapse exited with code {code} during start-up\n{self.log_tail()}"
                    )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with probe.get(versions) as response:
                        if response.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise SynapseError(
                        f"Synapse was not ready after {self.startup_timeout:.0f} s\n"
                        f"{self.log_tail()}"
                    )
                await asyncio.sleep(0.1)


def _spawn_homeserver(config_path: Path, console_log: Path) -> subprocess.Popen[bytes]:
    """Fork Synapse in its own session, console output into a file.

    Deliberately a plain `Popen` in the calling (event loop) thread: the atexit hook needs a
    handle it can wait on without a loop, and the parent-death signal belongs to the thread
    that forks, so running this in `asyncio.to_thread` would kill Synapse when that worker
    thread retires. Forking itself does not block the loop noticeably.
    """
    with console_log.open("ab") as console:
        process = subprocess.Popen(
            [sys.executable, "-m", "synapse.app.homeserver", "-c", str(config_path)],
            cwd=config_path.parent,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()),
        )
    _LIVE_PROCESSES[process.pid] = process
    return process


async def _wait_exit(process: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def _read_state(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(folder: Path, state: Mapping[str, Any]) -> None:
    path = folder / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(path)
