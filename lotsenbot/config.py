"""Configuration: pydantic models of ``config.toml`` and one load function.

The key names are a stable interface: municipalities keep their config files across upgrades,
so keys are only ever added, never renamed. Problems are reported as one :class:`ConfigError`
that lists every mistake found, each with the file, the key and what is wrong in German; the
CLI prints one line per mistake and exits with code 2 instead of a traceback.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Sequence
from datetime import time
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from lotsenbot.core.durations import parse_duration

MATRIX_ID = re.compile(r"^@[a-z0-9._=\-/+]+:[A-Za-z0-9.\-]+(:\d+)?$")
ROOM_ID = re.compile(r"^!.+:[A-Za-z0-9.\-]+(:\d+)?$")
DEPARTMENT_ID = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,39}$")
DURATION_PATTERN = r"^\s*\d+\s*[smhd]\s*$"

ENV_PASSWORD = "LOTSENBOT_MATRIX_PASSWORD"
ENV_ACCESS_TOKEN = "LOTSENBOT_MATRIX_ACCESS_TOKEN"
ENV_PICKLE_KEY = "LOTSENBOT_PICKLE_KEY"
ENV_CONFIG = "LOTSENBOT_CONFIG"


class ConfigError(Exception):
    """Configuration problems, already phrased for the admin who has to fix them.

    ``key`` and ``problem`` are the first problem; ``problems`` holds all of them (key or
    None, problem), in file order, and :meth:`lines` gives one "file: key: problem" line
    each.
    """

    def __init__(
        self,
        path: Path | str,
        key: str | None,
        problem: str,
        *,
        more: Sequence[tuple[str | None, str]] = (),
    ) -> None:
        self.path = str(path)
        self.key = key
        self.problem = problem
        self.problems: list[tuple[str | None, str]] = [(key, problem), *more]
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [
            f"{self.path}: {key}: {problem}" if key else f"{self.path}: {problem}"
            for key, problem in self.problems
        ]


def _check_user_id(value: str) -> str:
    if not MATRIX_ID.match(value):
        raise ValueError(f"„{value}“ ist keine gültige Matrix-ID (Form: @name:server.de)")
    return value


def _check_room_id(value: str) -> str:
    if not ROOM_ID.match(value):
        raise ValueError(f"„{value}“ ist keine gültige Raum-ID (Form: !abc123:server.de)")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MatrixConfig(_Section):
    homeserver: str
    user_id: str
    password: str | None = None
    access_token: str | None = None
    device_id: str | None = None
    device_name: str = "lotsenbot"
    store_path: Path = Path("store")
    pickle_key: str | None = None
    allowed_servers: list[str] = Field(default_factory=list)
    sync_timeout_ms: int = Field(default=30_000, ge=1_000, le=120_000)
    # Create and use cross-signing keys so the bot's device shows as verified by its owner.
    cross_signing: bool = True
    # Direct chats the bot opens itself (to notify pilots, for announcements) are end-to-end
    # encrypted, as Element and BundesMessenger do for direct chats.
    encrypt_direct_chats: bool = True
    # How long a room key may take before the sender hears that a message was unreadable.
    undecryptable_notice_after: str = Field(default="60s", pattern=DURATION_PATTERN)

    @field_validator("homeserver")
    @classmethod
    def _homeserver(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(
                "muss mit http:// oder https:// beginnen, z. B. https://matrix.stadt.de"
            )
        return value.rstrip("/")

    @field_validator("user_id")
    @classmethod
    def _user(cls, value: str) -> str:
        return _check_user_id(value)

    @field_validator("allowed_servers")
    @classmethod
    def _servers(cls, value: list[str]) -> list[str]:
        for server in value:
            if not re.fullmatch(r"[A-Za-z0-9.\-]+(:\d+)?", server):
                raise ValueError(
                    f"„{server}“ ist kein Servername: gemeint ist der Teil hinter dem "
                    "Doppelpunkt einer Matrix-ID, z. B. stadt.de (ohne https:// und /)"
                )
        return value

    @model_validator(mode="after")
    def _credentials(self, info: ValidationInfo) -> MatrixConfig:
        if not (info.context or {}).get("login", True):
            return self  # backup, purge, migrate, faq: no login, so no secret needed
        if not self.password and not self.access_token:
            raise ValueError(
                f"password oder access_token fehlt (auch über {ENV_PASSWORD} "
                f"bzw. {ENV_ACCESS_TOKEN} möglich)"
            )
        if self.access_token and not self.device_id:
            raise ValueError("zu access_token gehört auch device_id")
        return self

    @property
    def server_name(self) -> str:
        return self.user_id.split(":", 1)[1]

    @property
    def effective_allowed_servers(self) -> list[str]:
        """The servers whose users are served; none configured means the bot's own server."""
        return list(self.allowed_servers) or [self.server_name]


class DatabaseConfig(_Section):
    path: Path = Path("lotsenbot.db")


OfficeDay = Literal["mo", "di", "mi", "do", "fr", "sa", "so"]


class OfficeHours(_Section):
    """Office hours per weekday as "HH:MM-HH:MM"; missing days are closed."""

    mo: str | None = "08:00-16:00"
    di: str | None = "08:00-16:00"
    mi: str | None = "08:00-16:00"
    do: str | None = "08:00-16:00"
    fr: str | None = "08:00-13:00"
    sa: str | None = None
    so: str | None = None

    @field_validator("*")
    @classmethod
    def _span(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parse_span(value)
        return value

    def spans(self) -> dict[int, tuple[time, time | None]]:
        """Weekday (0 = Monday) → (start, end); end None means midnight (24:00)."""
        out: dict[int, tuple[time, time | None]] = {}
        for index, day in enumerate(("mo", "di", "mi", "do", "fr", "sa", "so")):
            value = getattr(self, day)
            if value:
                out[index] = parse_span(value)
        return out


def parse_span(value: str) -> tuple[time, time | None]:
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", value)
    if not match:
        raise ValueError(f'„{value}“: erwartet wird z. B. "08:00-16:00"')
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
        raise ValueError(f"„{value}“ ist keine gültige Uhrzeit-Spanne")
    start = time(h1, m1)
    end = None if h2 == 24 else time(h2, m2)
    if end is not None and end <= start:
        raise ValueError(f"„{value}“: das Ende muss nach dem Beginn liegen")
    return start, end


class BotConfig(_Section):
    language: Literal["de", "en"] = "de"
    timezone: str = "Europe/Berlin"
    prefix: str = Field(default="!", min_length=1, max_length=3)
    coordinators: list[str] = Field(default_factory=list)
    coordinator_room: str | None = None
    state: str = "NW"
    office_hours: OfficeHours = Field(default_factory=OfficeHours)
    max_message_length: int = Field(default=16_000, ge=100, le=65_536)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unbekannte Zeitzone „{value}“ (z. B. Europe/Berlin)") from exc
        return value

    @field_validator("coordinators")
    @classmethod
    def _coordinators(cls, value: list[str]) -> list[str]:
        return [_check_user_id(v) for v in value]

    @field_validator("coordinator_room")
    @classmethod
    def _room(cls, value: str | None) -> str | None:
        return _check_room_id(value) if value else None

    @field_validator("state")
    @classmethod
    def _state(cls, value: str) -> str:
        states = {
            "BB", "BE", "BW", "BY", "HB", "HE", "HH", "MV",
            "NI", "NW", "RP", "SH", "SL", "SN", "ST", "TH",
        }  # fmt: skip
        if value.upper() not in states:
            raise ValueError(f"„{value}“ ist kein Bundesland-Kürzel ({', '.join(sorted(states))})")
        return value.upper()

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class DepartmentConfig(_Section):
    id: str
    name: str = Field(min_length=1)
    description: str = ""
    keywords: list[str] = Field(default_factory=list)
    pilots: list[str] = Field(default_factory=list)
    room: str | None = None
    specialist: bool = False

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not DEPARTMENT_ID.match(value):
            raise ValueError(
                f'„{value}“: nur Kleinbuchstaben, Ziffern, - und _ (z. B. "it", "buergeramt")'
            )
        return value

    @field_validator("pilots")
    @classmethod
    def _pilots(cls, value: list[str]) -> list[str]:
        return [_check_user_id(v) for v in value]

    @field_validator("room")
    @classmethod
    def _room(cls, value: str | None) -> str | None:
        return _check_room_id(value) if value else None


Duration = Annotated[str, Field(pattern=DURATION_PATTERN)]


class TicketsConfig(_Section):
    claim_within: Duration = "4h"
    answer_within: Duration = "2d"
    reopen_days: int = Field(default=14, ge=0, le=365)
    working_time: Literal["office", "always"] = "office"


class MeetupsConfig(_Section):
    reminders: list[Duration] = Field(default_factory=lambda: ["24h", "1h"])


class FaqConfig(_Section):
    # Local synonym groups on top of the shipped list (YAML, relative to the config file).
    synonyms_file: Path | None = None
    # OpenThesaurus (Debian's mythes-de) for query words the knowledge base does not know,
    # used when installed.
    thesaurus: bool = True


class PrivacyConfig(_Section):
    ticket_contents_days: int = Field(default=180, ge=1)
    unanswered_questions_days: int = Field(default=90, ge=1)
    feedback_days: int = Field(default=365, ge=1)
    signups_days: int = Field(default=180, ge=1)
    delivery_records_days: int = Field(default=30, ge=1)
    handled_events_days: int = Field(default=30, ge=1)
    # People who have not written for this long: their user record (department, language);
    # also display names the homeserver has not confirmed for as long (display_names).
    inactive_users_days: int = Field(default=365, ge=1)
    # Audit entries are evidence of privileged actions and of data-subject requests.
    audit_log_days: int = Field(default=730, ge=1)
    per_person_stats: bool = False
    # The statistics report every Monday 08:00 to the coordinators.
    weekly_report: bool = True


class MetricsConfig(_Section):
    """Optional HTTP listener for /health and Prometheus /metrics; off unless listen is set."""

    listen: str | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        host, port = split_listen(value)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def address(self) -> tuple[str, int] | None:
        return split_listen(self.listen) if self.listen else None


def split_listen(value: str) -> tuple[str, int]:
    """Host and port of "127.0.0.1:9120" or "[::1]:9120"; the host is required on purpose,
    so the listener is never bound to every interface by accident."""
    match = re.fullmatch(r"\s*(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.\-]+)):(\d{1,5})\s*", value)
    if not match:
        raise ValueError(f'„{value}“: erwartet wird Adresse:Port, z. B. "127.0.0.1:9120"')
    host = match.group(1) or match.group(2)
    port = int(match.group(3))
    if not 0 < port < 65536:
        raise ValueError(f"„{value}“: Port muss zwischen 1 und 65535 liegen")
    return host, port


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = False
    log_message_bodies: bool = False


class Config(_Section):
    matrix: MatrixConfig
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    bot: BotConfig = Field(default_factory=BotConfig)
    departments: list[DepartmentConfig] = Field(default_factory=list)
    tickets: TicketsConfig = Field(default_factory=TicketsConfig)
    meetups: MeetupsConfig = Field(default_factory=MeetupsConfig)
    faq: FaqConfig = Field(default_factory=FaqConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("departments")
    @classmethod
    def _unique_departments(cls, value: list[DepartmentConfig]) -> list[DepartmentConfig]:
        seen: set[str] = set()
        for dep in value:
            if dep.id in seen:
                raise ValueError(f"Abteilungs-ID „{dep.id}“ kommt doppelt vor")
            seen.add(dep.id)
        return value

    def warnings(self) -> list[str]:
        """What is allowed but probably not meant (``check-config`` shows it, ``run`` logs
        it at start)."""
        found = []
        if self.departments and not self.bot.coordinators and not self.bot.coordinator_room:
            found.append(
                "bot.coordinators ist leer und bot.coordinator_room fehlt: unklare Anfragen "
                "und Eskalationen erreichen niemanden"
            )
        found += [
            f"Abteilung „{dep.id}“ hat weder Lotsinnen/Lotsen (pilots) noch einen Raum (room):"
            " ihre Anfragen sieht nur die Koordination"
            for dep in self.departments
            if not dep.pilots and not dep.room
        ]
        allowed = set(self.matrix.effective_allowed_servers)
        people = [*self.bot.coordinators, *(p for dep in self.departments for p in dep.pilots)]
        found += [
            f"{person} ist auf einem Server, den matrix.allowed_servers nicht enthält: der Bot "
            "beachtet die Person nicht"
            for person in dict.fromkeys(people)
            if person.split(":", 1)[1] not in allowed
        ]
        return found

    def department(self, department_id: str) -> DepartmentConfig | None:
        return next((d for d in self.departments if d.id == department_id), None)

    def durations(self) -> dict[str, float]:
        return {
            "claim_within": parse_duration(self.tickets.claim_within).total_seconds(),
            "answer_within": parse_duration(self.tickets.answer_within).total_seconds(),
        }


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item + 1}]" if parts else f"[{item + 1}]"]
        else:
            parts.append(item)
    return ".".join(parts)


SECRET_KEYS = frozenset({"password", "access_token", "pickle_key"})
"""Keys whose values never appear in an error message (the console may be shared or logged)."""


def _shown(value: object) -> str:
    """A value as the admin wrote it in the file, shortened for one line."""
    if isinstance(value, str):
        text = f"„{value}“"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dict):
        return "einen Abschnitt"
    elif isinstance(value, list):
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _section_header(key: str) -> str:
    """How the section at ``key`` is written in TOML: [bot] or [[departments]]."""
    name = re.sub(r"\[\d+\]", "", key)
    return f"[[{name}]]" if key.endswith("]") else f"[{name}]"


def _choices(expected: str) -> str:
    """pydantic's "'de' or 'en'" as '"de" oder "en"'."""
    values = re.findall(r"'([^']*)'", expected)
    if not values:
        return expected
    quoted = [f'"{value}"' for value in values]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} oder {quoted[-1]}"


def _problem(error: ErrorDetails) -> str:
    """The German message for one pydantic error, by its ``type`` and ``ctx``.

    The types are those the models of this file can raise for values TOML can hold; anything
    else still names the value and pydantic's own message, marked as technical.
    """
    kind = error["type"]
    ctx = error.get("ctx") or {}
    loc = error["loc"]
    secret = bool(loc) and loc[-1] in SECRET_KEYS
    value = "" if secret else _shown(error.get("input"))
    got = "" if secret else f", nicht {value}"
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])  # our own validators already speak German
    if kind == "missing":
        return "fehlt (Pflichtangabe)"
    if kind == "extra_forbidden":
        return "unbekannter Schlüssel (Tippfehler? Siehe config.example.toml)"
    if kind == "string_type":
        return f'muss ein Text in Anführungszeichen sein, z. B. "…"{got}'
    if kind == "string_too_short":
        minimum = ctx.get("min_length", 1)
        if minimum == 1:
            return "darf nicht leer sein"
        return f"muss mindestens {minimum} Zeichen lang sein{got}"
    if kind == "string_too_long":
        return f"darf höchstens {ctx.get('max_length')} Zeichen lang sein{got}"
    if kind == "string_pattern_mismatch":
        if ctx.get("pattern") == DURATION_PATTERN:
            return (
                f"ungültige Dauer {value}: erwartet wird eine Zahl mit der Einheit s, m, h "
                'oder d, z. B. "90s", "4h", "2d"'
            )
        return f"{value} hat nicht die erwartete Form (siehe config.example.toml)"
    if kind in ("int_type", "int_parsing"):
        return f"muss eine ganze Zahl sein (ohne Anführungszeichen){got}"
    if kind == "int_from_float":
        return f"muss eine ganze Zahl sein (ohne Nachkommastellen){got}"
    if kind == "int_parsing_size":
        return f"die Zahl {value} ist zu groß"
    if kind in ("bool_type", "bool_parsing"):
        return f"muss true oder false sein (klein geschrieben, ohne Anführungszeichen){got}"
    if kind == "list_type":
        if isinstance(error.get("input"), str) and not secret:
            example = json.dumps([error.get("input")], ensure_ascii=False)
            return (
                "muss eine Liste in eckigen Klammern sein, auch mit nur einem Eintrag: "
                f"{example} statt {value}"
            )
        return f'muss eine Liste in eckigen Klammern sein, z. B. ["…", "…"]{got}'
    if kind in ("literal_error", "enum"):
        return f"{value} ist nicht erlaubt; möglich: {_choices(str(ctx.get('expected', '')))}"
    if kind == "greater_than_equal":
        return f"muss mindestens {ctx.get('ge')} sein{got}"
    if kind == "greater_than":
        return f"muss größer als {ctx.get('gt')} sein{got}"
    if kind == "less_than_equal":
        return f"darf höchstens {ctx.get('le')} sein{got}"
    if kind == "less_than":
        return f"muss kleiner als {ctx.get('lt')} sein{got}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        header = _section_header(_location(loc)) if loc else "[…]"
        return f"muss ein Abschnitt {header} mit eigenen Schlüsseln sein, kein einzelner Wert"
    if kind == "path_type":
        return f'muss ein Pfad in Anführungszeichen sein, z. B. "/var/lib/lotsenbot"{got}'
    message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    shown = "ungültiger Wert" if secret else f"ungültiger Wert {value}"
    return f"{shown} (technische Meldung: {message})"


def _resolve(base: Path, value: Path) -> Path:
    return value if value.is_absolute() else (base / value).resolve()


def default_config_path() -> Path:
    return Path(os.environ.get(ENV_CONFIG) or "config.toml")


def load_config(path: Path | str, *, login: bool = True) -> Config:
    """Read, validate and complete a config file; raise :class:`ConfigError` on any problem.

    ``login=False`` for commands that never talk to the homeserver (backup, purge, migrate,
    faq, route): they run as the service user, who cannot read the secrets file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(path, None, "Datei nicht gefunden") from None
    except OSError as exc:
        raise ConfigError(path, None, f"kann nicht gelesen werden ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(path, None, "ist nicht UTF-8-kodiert") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, None, f"kein gültiges TOML: {exc}") from None

    matrix = data.get("matrix")
    if isinstance(matrix, dict):
        if os.environ.get(ENV_PASSWORD):
            matrix["password"] = os.environ[ENV_PASSWORD]
        if os.environ.get(ENV_ACCESS_TOKEN):
            matrix["access_token"] = os.environ[ENV_ACCESS_TOKEN]
        if os.environ.get(ENV_PICKLE_KEY):
            matrix["pickle_key"] = os.environ[ENV_PICKLE_KEY]
    try:
        config = Config.model_validate(data, context={"login": login})
    except ValidationError as exc:
        problems = [(_location(error["loc"]) or None, _problem(error)) for error in exc.errors()]
        (key, problem), *more = problems
        raise ConfigError(path, key, problem, more=more) from None

    base = path.resolve().parent
    matrix_cfg = config.matrix.model_copy(
        update={"store_path": _resolve(base, config.matrix.store_path)}
    )
    database_cfg = config.database.model_copy(update={"path": _resolve(base, config.database.path)})
    synonyms_file = config.faq.synonyms_file
    faq_cfg = config.faq.model_copy(
        update={"synonyms_file": _resolve(base, synonyms_file) if synonyms_file else None}
    )
    if faq_cfg.synonyms_file is not None and not faq_cfg.synonyms_file.is_file():
        raise ConfigError(path, "faq.synonyms_file", f"Datei {faq_cfg.synonyms_file} fehlt")
    return config.model_copy(
        update={
            "matrix": matrix_cfg,
            "database": database_cfg,
            "faq": faq_cfg,
            "source": path.resolve(),
        }
    )
