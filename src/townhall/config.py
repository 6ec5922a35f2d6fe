"""Configuration: one dataclass per component, combined here and read from the environment.

Every option has an embedded default so that `townhall serve` runs with nothing configured; each can
be set with a `TOWNHALL_*` environment variable, and the CLI's flags override both. The README's
configuration table lists them all; `docs/config.md` says more about those a cluster needs.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from email.utils import parseaddr
from pathlib import Path

from townhall.ratelimit.storage import RECORDING_RESERVE_S, StorageQuota, recording_cost
from townhall.reminders.mailer import TLS_MODES, SmtpConfig
from townhall.reminders.webpush import PushConfig, VapidKey
from townhall.spaces.lifecycle import DEFAULT_HOST_ABSENT_LIMIT_S
from townhall.telemetry.jsonlog import LOG_FORMATS


class ConfigError(ValueError):
    """An option has a value that cannot be used; the message names the option."""


@dataclass(frozen=True)
class IceServer:
    urls: str
    username: str | None = None
    credential: str | None = None

    def as_dict(self) -> dict[str, str]:
        out = {"urls": self.urls}
        if self.username is not None:
            out["username"] = self.username
        if self.credential is not None:
            out["credential"] = self.credential
        return out


@dataclass(frozen=True)
class MediaConfig:
    """The audio path's knobs. Part and segment lengths decide latency versus request rate."""

    aac_frames_per_part: int = 15  # 15 × 1024 samples = exactly 0.32 s at 48 kHz
    parts_per_segment: int = 6  # 1.92 s segments
    window_segments: int = 6  # live playlist keeps ~11.5 s
    aac_bitrate: int = 64_000
    return_bitrate: int = 32_000  # Opus mix-minus sent back to each speaker
    # Where Spaces with `record` on keep their recordings (<dir>/<space>/<stream>/); None: nothing
    # is recorded. `load` fills it: TOWNHALL_RECORDINGS_DIR, else <data_dir>/recordings.
    recordings_dir: Path | None = None

    @property
    def part_seconds(self) -> float:
        return self.aac_frames_per_part * 1024 / 48_000


@dataclass(frozen=True)
class CaptionsConfig:
    """Live captions (townhall/captions): whether this server may caption Spaces, and with what.

    `model` is a CTranslate2 Whisper directory; None means captions are off on this server (hosts
    cannot turn them on). `load` fills both from TOWNHALL_CAPTIONS and TOWNHALL_CAPTIONS_MODEL."""

    model: Path | None = None
    # Windows of speech transcribed at once per node (one worker process); what comes in while
    # the worker is busy is merged per Space, and the oldest dropped past `max_pending_s`.
    max_pending_s: float = 10.0
    niceness: int = 10  # the worker process yields the CPU to the media clock
    threads: int = 1  # CTranslate2 threads in the worker

    @property
    def enabled(self) -> bool:
        return self.model is not None


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    secret: str = ""  # filled from the environment or data_dir/secret.key by `load`
    public_url: str = ""  # how browsers reach this server; derived from host:port when empty
    # Addresses and networks of the proxies (the edge) whose X-Forwarded-For/-Proto are believed:
    # the client address every per-address limit and count keys on, and the scheme of the links
    # the server builds. Empty: nobody's, so a peer cannot claim to be someone else (or many).
    trusted_proxies: tuple[str, ...] = ()
    # Connections the OS may hold for this server before it accepts them. A join storm arrives
    # faster than any process accepts; past the queue the kernel drops the new connection and the
    # client's retry comes 1, 3, 7 s later, which a listener sees as a dead server. 0: the most
    # the OS allows (net.core.somaxconn).
    listen_backlog: int = 0
    # Connections one process holds; past it a new one is answered 503 + Retry-After at accept,
    # before its request is read (api/accept.py). 0: the open-files limit less a reserve.
    max_connections: int = 0
    # A new connection that waited longer than this in the accept queue is answered 503 +
    # Retry-After at accept (api/accept.py): in a join storm everyone hears back within about it.
    accept_wait_max_ms: int = 500
    session_ttl_s: int = 30 * 86400  # how long a sign-in (or guest identity) lasts
    ice_servers: tuple[IceServer, ...] = ()
    database_url: str = ""  # sqlite:///… or postgresql://…; empty: SQLite file in data_dir
    # Connections each process keeps to the database, the extra ones a burst may open, and how long
    # a transaction waits for one before failing. 3 + 1 lets 20 processes share PostgreSQL's
    # default 100 connections (see state/database.py).
    database_pool_size: int = 3
    database_max_overflow: int = 1
    database_pool_timeout_s: int = 5
    redis_url: str = ""  # empty: embedded live state (one process); set for many processes/nodes
    # Requests in flight per class before answering 503 + Retry-After (see api/admission.py).
    inflight_media: int = 50_000
    inflight_listener: int = 2_000
    inflight_interaction: int = 500
    inflight_control: int = 1_000
    max_live_spaces: int = 50  # per media node: each open Space costs a media clock and encoders
    # What this process does: "all" (one box: API and media), "api" (never runs media) or "media"
    # (runs the Spaces placed on it; answers API requests too).
    role: str = "all"
    # Where the other nodes reach this one (relayed /live and /rtc requests); derived from
    # host:port when empty, which suits one machine; set it when nodes run on several machines.
    node_url: str = ""
    # A Space whose host stays off its stage this long ends by itself (lifecycle owns the rule).
    empty_stage_end_s: int = int(DEFAULT_HOST_ABSENT_LIMIT_S)
    # Days a recording (and its clips) is kept after its Space ended; 0 keeps it forever. An
    # expired recording is deleted and its replay, download and clips answer 410.
    recording_retention_days: int = 30
    # Whether a guest (a display name, no account) may create Spaces. On: one box is usable at
    # once (the quick start continues as a guest), and creation is bounded anyway (per person,
    # per address, open Spaces per host, node capacity). A public server that wants its hosts
    # accountable (a ban on an account sticks, a guest is a new cookie away) turns it off.
    guests_create_spaces: bool = True
    # Spaces one host may have scheduled, in the green room or live at once (0: no cap).
    max_open_spaces_per_host: int = 3
    # Disk the clips of one Space may take (MB; 0: no quota). A 60 s clip is about 0.5 MB at the
    # default bitrate, so the default is some 400 full-length clips.
    clip_quota_per_space_mb: int = 200
    # Disk one identity, and one address, may fill with clips and recordings (MB; 0: no quota),
    # a budget refilled evenly over the recording retention period (see ratelimit/storage.py).
    # Identities are free, addresses are not: the address budget is what bounds a stranger. At
    # the default bitrate an hour of recording is about 30 MB and a 60 s clip about 0.5 MB.
    storage_quota_per_identity_mb: int = 2_000
    storage_quota_per_address_mb: int = 5_000
    # The bearer token `GET /metrics` (Prometheus) must carry; empty: /metrics is off (404), so
    # nothing about the node's traffic is readable until the operator chooses a secret for it.
    metrics_token: str = ""
    # Log lines as "text" (one human-readable line each) or "json" (one JSON object each).
    log_format: str = "text"
    # One log line per HTTP request (method, path, route, status, duration, request id). Off by
    # default: listeners make several requests a second each.
    access_log: bool = False
    media: MediaConfig = field(default_factory=MediaConfig)
    # Reminder mail (reminders/mailer.py); no host: no mail, reminders stay on the page.
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    # Web Push reminders (reminders/webpush.py): the VAPID key and subject, filled by `load`.
    push: PushConfig = field(default_factory=PushConfig)
    captions: CaptionsConfig = field(default_factory=CaptionsConfig)

    @property
    def storage_quota(self) -> StorageQuota:
        return StorageQuota.from_config(
            self.storage_quota_per_identity_mb,
            self.storage_quota_per_address_mb,
            self.recording_retention_days,
        )

    @property
    def recording_reserve_bytes(self) -> int:
        """What a recorded Space's host (and address) pay at creation: its first hour."""
        return recording_cost(RECORDING_RESERVE_S, self.media.aac_bitrate)

    @property
    def runs_media(self) -> bool:
        return self.role in ("all", "media")

    @property
    def internal_url(self) -> str:
        if self.node_url:
            return self.node_url.rstrip("/")
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


SOMAXCONN = Path("/proc/sys/net/core/somaxconn")


def listen_backlog(config: Config) -> int:
    """The accept queue to ask for: the configured one, else the most the OS allows (asking for
    more is silently cut to that, asking for less wastes it)."""
    if config.listen_backlog:
        return config.listen_backlog
    try:
        return max(128, min(65535, int(SOMAXCONN.read_text())))
    except (OSError, ValueError):
        return 4096


def _int(env: dict[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw not in _TRUE + _FALSE:
        raise ConfigError(f"{name} must be true or false, got {raw!r}")
    return raw in _TRUE


ROLES = ("all", "api", "media")


def _role(raw: str) -> str:
    role = raw.strip().lower() or Config.role
    if role not in ROLES:
        raise ConfigError(f"TOWNHALL_ROLE must be one of {', '.join(ROLES)}, got {raw!r}")
    return role


def _database_url(raw: str) -> str:
    """TOWNHALL_DATABASE_URL with townhall's async driver filled in (`postgresql://…` →
    `postgresql+asyncpg://…`); refused at start rather than at the first query if it cannot work."""
    if not raw:
        return ""
    from townhall.state.database import driver_url  # SQLAlchemy: imported only when configured

    try:
        return driver_url(raw)
    except ValueError as exc:
        raise ConfigError(f"TOWNHALL_DATABASE_URL: {exc}") from None


def parse_ice_servers(raw: str) -> tuple[IceServer, ...]:
    """`stun:host:3478,turn:user:pass@host:3478` → ICE servers (credentials only for turn/turns)."""
    servers = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        scheme, _, rest = item.partition(":")
        if scheme not in ("stun", "turn", "turns") or not rest:
            raise ConfigError(
                f"TOWNHALL_ICE_SERVERS: cannot read {item!r} (want stun:HOST:PORT or turn:USER:PASS@HOST:PORT)"
            )
        if "@" in rest and scheme != "stun":
            cred, _, hostport = rest.rpartition("@")
            user, _, password = cred.partition(":")
            servers.append(IceServer(f"{scheme}:{hostport}", user, password))
        else:
            servers.append(IceServer(item))
    return tuple(servers)


def parse_trusted_proxies(raw: str) -> tuple[str, ...]:
    """`127.0.0.1,10.0.0.0/8,::1` → addresses and networks, each checked, so that a typo is an
    error at start rather than a proxy silently not trusted (uvicorn would take it as a name)."""
    proxies = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(
                f"TOWNHALL_TRUSTED_PROXIES: {item!r} is not an IP address or network (e.g. 127.0.0.1, 10.0.0.0/8)"
            ) from None
        one = network.num_addresses == 1
        proxies.append(str(network.network_address) if one else str(network))
    return tuple(proxies)


METRICS_TOKEN_MIN = 16


def _metrics_token(raw: str) -> str:
    token = raw.strip()
    if token and (len(token) < METRICS_TOKEN_MIN or not token.isprintable() or " " in token):
        raise ConfigError(
            f"TOWNHALL_METRICS_TOKEN must be at least {METRICS_TOKEN_MIN} printable characters "
            "without spaces (e.g. from `openssl rand -hex 24`)"
        )
    return token


def log_format(env: Mapping[str, str]) -> str:
    """TOWNHALL_LOG_FORMAT: read on its own too, since logging is set up before the rest."""
    raw = env.get("TOWNHALL_LOG_FORMAT", "").strip().lower() or Config.log_format
    if raw not in LOG_FORMATS:
        raise ConfigError(
            f"TOWNHALL_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got {raw!r}"
        )
    return raw


def parse_smtp(env: dict[str, str]) -> SmtpConfig:
    """TOWNHALL_SMTP_*: where reminder mail goes out, checked at start."""
    host = env.get("TOWNHALL_SMTP_HOST", "").strip()
    tls = env.get("TOWNHALL_SMTP_TLS", "").strip().lower() or SmtpConfig.tls
    if tls not in TLS_MODES:
        raise ConfigError(f"TOWNHALL_SMTP_TLS must be one of {', '.join(TLS_MODES)}, got {tls!r}")
    sender = env.get("TOWNHALL_SMTP_FROM", "").strip()
    if host and "@" not in sender:
        raise ConfigError(
            "TOWNHALL_SMTP_FROM must be the address reminders come from (e.g. "
            "'townhall <reminders@example.org>') when TOWNHALL_SMTP_HOST is set"
        )
    default_port = {"starttls": 587, "tls": 465, "none": 25}[tls]
    rate = env.get("TOWNHALL_SMTP_RATE", "").strip()
    try:
        per_second = float(rate) if rate else SmtpConfig.per_second
    except ValueError:
        raise ConfigError(f"TOWNHALL_SMTP_RATE must be a number, got {rate!r}") from None
    if not 0.01 <= per_second <= 10_000:
        raise ConfigError(f"TOWNHALL_SMTP_RATE must be between 0.01 and 10000, got {rate!r}")
    return SmtpConfig(
        host=host,
        port=_int(env, "TOWNHALL_SMTP_PORT", default_port, low=1, high=65535),
        tls=tls,
        username=env.get("TOWNHALL_SMTP_USER", ""),
        password=env.get("TOWNHALL_SMTP_PASSWORD", ""),
        sender=sender,
        per_second=per_second,
        ca_file=env.get("TOWNHALL_SMTP_CA_FILE", ""),
    )


CAPTIONS_SWITCH = ("auto", "on", "off")


def parse_captions(env: Mapping[str, str]) -> CaptionsConfig:
    """TOWNHALL_CAPTIONS (auto, on, off; default auto: on when a model is at hand) and
    TOWNHALL_CAPTIONS_MODEL (a CTranslate2 Whisper directory; default: the tiny.en model of the
    `captions` extra). `on` without a usable model is an error at start, not a silent off."""
    from townhall.captions import model as models  # no faster-whisper import: only a lookup

    switch = env.get("TOWNHALL_CAPTIONS", "").strip().lower() or "auto"
    if switch in _TRUE:
        switch = "on"
    elif switch in _FALSE:
        switch = "off"
    if switch not in CAPTIONS_SWITCH:
        raise ConfigError(
            f"TOWNHALL_CAPTIONS must be one of {', '.join(CAPTIONS_SWITCH)}, got {switch!r}"
        )
    if switch == "off":
        return CaptionsConfig()
    raw = env.get("TOWNHALL_CAPTIONS_MODEL", "").strip()
    model = Path(raw) if raw else models.default_model()
    if raw and not models.is_model_dir(Path(raw)):
        raise ConfigError(
            f"TOWNHALL_CAPTIONS_MODEL: {raw!r} is not a CTranslate2 Whisper directory "
            f"(it needs {' and '.join(models.MODEL_FILES)})"
        )
    if model is not None and not models.engine_installed():
        if switch == "on" or raw:
            raise ConfigError(
                "captions need faster-whisper: pip install 'townhall[captions]' "
                "(or set TOWNHALL_CAPTIONS=off)"
            )
        model = None
    if model is None and switch == "on":
        raise ConfigError(
            "TOWNHALL_CAPTIONS=on needs a model: install the captions extra "
            "(pip install 'townhall[captions]') or set TOWNHALL_CAPTIONS_MODEL"
        )
    return CaptionsConfig(model=model)


def load(env: dict[str, str] | None = None, **overrides: object) -> Config:
    """Build the config: defaults ← environment ← explicit overrides (CLI flags); then the secret."""
    env = dict(os.environ if env is None else env)
    media = MediaConfig(
        aac_frames_per_part=_int(
            env, "TOWNHALL_PART_AAC_FRAMES", MediaConfig.aac_frames_per_part, low=4, high=94
        ),
        parts_per_segment=_int(
            env, "TOWNHALL_PARTS_PER_SEGMENT", MediaConfig.parts_per_segment, low=1, high=30
        ),
        window_segments=_int(
            env, "TOWNHALL_WINDOW_SEGMENTS", MediaConfig.window_segments, low=3, high=60
        ),
        aac_bitrate=_int(
            env, "TOWNHALL_AAC_BITRATE", MediaConfig.aac_bitrate, low=16_000, high=256_000
        ),
        return_bitrate=_int(
            env, "TOWNHALL_RETURN_BITRATE", MediaConfig.return_bitrate, low=8_000, high=128_000
        ),
        recordings_dir=Path(env["TOWNHALL_RECORDINGS_DIR"])
        if env.get("TOWNHALL_RECORDINGS_DIR")
        else None,
    )
    values: dict[str, object] = {
        "host": env.get("TOWNHALL_HOST") or Config.host,
        "port": _int(env, "TOWNHALL_PORT", Config.port, low=0, high=65535),
        "data_dir": Path(env.get("TOWNHALL_DATA_DIR") or Config.data_dir),
        "secret": env.get("TOWNHALL_SECRET", ""),
        "public_url": env.get("TOWNHALL_PUBLIC_URL", ""),
        "trusted_proxies": parse_trusted_proxies(env.get("TOWNHALL_TRUSTED_PROXIES", "")),
        "listen_backlog": _int(
            env, "TOWNHALL_LISTEN_BACKLOG", Config.listen_backlog, low=0, high=65535
        ),
        "max_connections": _int(
            env, "TOWNHALL_MAX_CONNECTIONS", Config.max_connections, low=0, high=10**7
        ),
        "accept_wait_max_ms": _int(
            env, "TOWNHALL_ACCEPT_WAIT_MAX_MS", Config.accept_wait_max_ms, low=1, high=600_000
        ),
        "session_ttl_s": _int(
            env, "TOWNHALL_SESSION_TTL", Config.session_ttl_s, low=60, high=365 * 86400
        ),
        "ice_servers": parse_ice_servers(env.get("TOWNHALL_ICE_SERVERS", "")),
        "database_url": _database_url(env.get("TOWNHALL_DATABASE_URL", "")),
        "database_pool_size": _int(
            env, "TOWNHALL_DATABASE_POOL_SIZE", Config.database_pool_size, low=1, high=1_000
        ),
        "database_max_overflow": _int(
            env, "TOWNHALL_DATABASE_MAX_OVERFLOW", Config.database_max_overflow, low=0, high=1_000
        ),
        "database_pool_timeout_s": _int(
            env, "TOWNHALL_DATABASE_POOL_TIMEOUT", Config.database_pool_timeout_s, low=1, high=300
        ),
        "redis_url": env.get("TOWNHALL_REDIS_URL", ""),
        "inflight_media": _int(
            env, "TOWNHALL_INFLIGHT_MEDIA", Config.inflight_media, low=1, high=10**6
        ),
        "inflight_listener": _int(
            env, "TOWNHALL_INFLIGHT_LISTENER", Config.inflight_listener, low=1, high=10**6
        ),
        "inflight_interaction": _int(
            env, "TOWNHALL_INFLIGHT_INTERACTION", Config.inflight_interaction, low=1, high=10**6
        ),
        "inflight_control": _int(
            env, "TOWNHALL_INFLIGHT_CONTROL", Config.inflight_control, low=1, high=10**6
        ),
        "role": _role(env.get("TOWNHALL_ROLE", "")),
        "node_url": env.get("TOWNHALL_NODE_URL", ""),
        "max_live_spaces": _int(
            env, "TOWNHALL_MAX_LIVE_SPACES", Config.max_live_spaces, low=1, high=10_000
        ),
        "empty_stage_end_s": _int(
            env, "TOWNHALL_EMPTY_STAGE_END", Config.empty_stage_end_s, low=10, high=7 * 86400
        ),
        "recording_retention_days": _int(
            env,
            "TOWNHALL_RECORDING_RETENTION_DAYS",
            Config.recording_retention_days,
            low=0,
            high=100 * 365,
        ),
        "guests_create_spaces": _bool(
            env, "TOWNHALL_GUESTS_CREATE_SPACES", Config.guests_create_spaces
        ),
        "max_open_spaces_per_host": _int(
            env,
            "TOWNHALL_MAX_OPEN_SPACES_PER_HOST",
            Config.max_open_spaces_per_host,
            low=0,
            high=10_000,
        ),
        "clip_quota_per_space_mb": _int(
            env,
            "TOWNHALL_CLIP_QUOTA_PER_SPACE_MB",
            Config.clip_quota_per_space_mb,
            low=0,
            high=10**7,
        ),
        "storage_quota_per_identity_mb": _int(
            env,
            "TOWNHALL_STORAGE_QUOTA_PER_IDENTITY_MB",
            Config.storage_quota_per_identity_mb,
            low=0,
            high=10**7,
        ),
        "storage_quota_per_address_mb": _int(
            env,
            "TOWNHALL_STORAGE_QUOTA_PER_ADDRESS_MB",
            Config.storage_quota_per_address_mb,
            low=0,
            high=10**7,
        ),
        "metrics_token": _metrics_token(env.get("TOWNHALL_METRICS_TOKEN", "")),
        "log_format": log_format(env),
        "access_log": _bool(env, "TOWNHALL_ACCESS_LOG", Config.access_log),
        "media": media,
        "smtp": parse_smtp(env),
        "push": parse_push(env),
        "captions": parse_captions(env),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["role"] = _role(str(values["role"]))
    config = Config(**values)  # type: ignore[arg-type]
    if config.media.recordings_dir is None:  # after the overrides: follows --data-dir
        media = replace(config.media, recordings_dir=config.data_dir / "recordings")
        config = replace(config, media=media)
    if not config.secret:
        config = Config(**{**config.__dict__, "secret": _stored_secret(config.data_dir)})
    elif len(config.secret) < 32:
        raise ConfigError(
            "TOWNHALL_SECRET must be at least 32 characters (HS256 wants a 256-bit key)"
        )
    return replace(config, push=_completed_push(config))


def make_private_dir(path: Path) -> None:
    """Create a data directory readable by its owner only (records, secret, recordings live
    there); one that exists is left as its operator set it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _stored_secret(data_dir: Path) -> str:
    """A per-installation signing key kept in the data directory (mode 0600), made on first run.

    Tokens stay valid across restarts of one installation; several processes sharing one data
    directory share the key. Set TOWNHALL_SECRET to share it across machines.
    """
    return _stored_key(data_dir / "secret.key", secrets.token_urlsafe(48))


def _stored_key(path: Path, new: str) -> str:
    """The key kept in `path` (mode 0600, in a private data directory), or `new`, stored there
    first. Written whole under a temporary name and linked into place, which fails if the name
    exists: of processes starting together one stores its key and the others read it, never a
    half-written file."""
    if path.exists():
        return path.read_text().strip()
    make_private_dir(path.parent)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(new + "\n")
    try:
        os.link(draft, path)
    except FileExistsError:  # another process stored one first: use theirs
        return path.read_text().strip()
    finally:
        draft.unlink()
    return new


def parse_push(env: dict[str, str]) -> PushConfig:
    """TOWNHALL_VAPID_*: the Web Push key and subject, checked at start."""
    key = env.get("TOWNHALL_VAPID_PRIVATE_KEY", "").strip()
    if key:
        try:
            VapidKey.check(key)
        except ValueError as exc:
            raise ConfigError(
                f"TOWNHALL_VAPID_PRIVATE_KEY must be a raw P-256 private key in base64url "
                f"(43 characters, as `townhall vapid-key` prints): {exc}"
            ) from None
    subject = env.get("TOWNHALL_VAPID_SUBJECT", "").strip()
    if subject and not subject.startswith(("mailto:", "https://")):
        raise ConfigError(
            "TOWNHALL_VAPID_SUBJECT must be a mailto: or https:// address where push services "
            f"can reach the operator, got {subject!r}"
        )
    return PushConfig(
        vapid_private_key=key,
        subject=subject,
        allow_loopback_http=_bool(env, "TOWNHALL_PUSH_ALLOW_LOOPBACK_HTTP", False),
    )


def _completed_push(config: Config) -> PushConfig:
    """The push settings with a key (the configured one, else the data directory's, made on
    first run) and a subject (the configured one, else the reminder mail's sender, else the
    public URL if it is https, else a placeholder push services accept)."""
    push = config.push
    key = push.vapid_private_key or _stored_key(config.data_dir / "vapid.key", VapidKey.generate())
    subject = push.subject
    if not subject and "@" in config.smtp.sender:
        subject = f"mailto:{parseaddr(config.smtp.sender)[1]}"
    if not subject and config.public_url.startswith("https://"):
        subject = config.public_url.rstrip("/")
    return replace(push, vapid_private_key=key, subject=subject or "mailto:townhall@localhost")
