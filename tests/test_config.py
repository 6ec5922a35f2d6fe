from __future__ import annotations

import stat
from pathlib import Path

import pytest

from townhall.config import (
    ConfigError,
    IceServer,
    load,
    parse_ice_servers,
    parse_trusted_proxies,
)


def test_defaults_bind_loopback_8080_with_data_under_data(tmp_path: Path) -> None:
    config = load({}, data_dir=tmp_path)
    assert (config.host, config.port) == ("127.0.0.1", 8080)
    assert config.base_url == "http://127.0.0.1:8080"


def test_the_secret_is_made_once_kept_private_and_reused(tmp_path: Path) -> None:
    first = load({}, data_dir=tmp_path)
    second = load({}, data_dir=tmp_path)
    assert first.secret == second.secret
    assert len(first.secret) >= 32
    assert stat.S_IMODE((tmp_path / "secret.key").stat().st_mode) == 0o600


def test_environment_and_flags_override_defaults(tmp_path: Path) -> None:
    env = {"TOWNHALL_PORT": "9000", "TOWNHALL_HOST": "::1", "TOWNHALL_SECRET": "x" * 40}
    assert load(env, data_dir=tmp_path).base_url == "http://[::1]:9000"
    assert load(env, data_dir=tmp_path, port=9100).port == 9100


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TOWNHALL_PORT": "eighty"}, "TOWNHALL_PORT must be a whole number"),
        ({"TOWNHALL_PORT": "70000"}, "between 0 and 65535"),
        ({"TOWNHALL_SECRET": "short"}, "at least 32"),
        ({"TOWNHALL_ICE_SERVERS": "http://x"}, "cannot read"),
        ({"TOWNHALL_DATABASE_URL": "mysql://db/townhall"}, "SQLite or PostgreSQL"),
        ({"TOWNHALL_DATABASE_URL": "postgresql+psycopg2://db/t"}, "use postgresql://"),
        ({"TOWNHALL_DATABASE_URL": "not a url"}, "TOWNHALL_DATABASE_URL: cannot read"),
        ({"TOWNHALL_DATABASE_POOL_SIZE": "0"}, "TOWNHALL_DATABASE_POOL_SIZE must be between"),
        ({"TOWNHALL_DATABASE_MAX_OVERFLOW": "-1"}, "TOWNHALL_DATABASE_MAX_OVERFLOW"),
        ({"TOWNHALL_DATABASE_POOL_TIMEOUT": "0"}, "TOWNHALL_DATABASE_POOL_TIMEOUT"),
        ({"TOWNHALL_TRUSTED_PROXIES": "nginx.local"}, "not an IP address or network"),
        ({"TOWNHALL_GUESTS_CREATE_SPACES": "maybe"}, "TOWNHALL_GUESTS_CREATE_SPACES must be true"),
        ({"TOWNHALL_MAX_OPEN_SPACES_PER_HOST": "-1"}, "TOWNHALL_MAX_OPEN_SPACES_PER_HOST"),
        ({"TOWNHALL_CLIP_QUOTA_PER_SPACE_MB": "lots"}, "TOWNHALL_CLIP_QUOTA_PER_SPACE_MB"),
        ({"TOWNHALL_STORAGE_QUOTA_PER_IDENTITY_MB": "-5"}, "TOWNHALL_STORAGE_QUOTA_PER_IDENTITY"),
        ({"TOWNHALL_STORAGE_QUOTA_PER_ADDRESS_MB": "a lot"}, "TOWNHALL_STORAGE_QUOTA_PER_ADDRESS"),
    ],
)
def test_bad_values_are_named_in_the_error(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load(env, data_dir=tmp_path)


def test_ice_servers_parse_stun_and_turn_with_credentials() -> None:
    assert parse_ice_servers("stun:stun.example.org:3478, turn:u:p@turn.example.org:3478") == (
        IceServer("stun:stun.example.org:3478"),
        IceServer("turn:turn.example.org:3478", "u", "p"),
    )


def test_no_proxy_is_trusted_unless_listed_as_addresses_or_networks(tmp_path: Path) -> None:
    assert load({}, data_dir=tmp_path).trusted_proxies == ()
    assert parse_trusted_proxies(" 127.0.0.1, 10.1.2.3/8,::1/128 ,") == (
        "127.0.0.1",
        "10.0.0.0/8",
        "::1",
    )


def test_recordings_are_kept_30_days_unless_configured_and_0_keeps_them_forever(
    tmp_path: Path,
) -> None:
    assert load({}, data_dir=tmp_path).recording_retention_days == 30
    env = {"TOWNHALL_RECORDING_RETENTION_DAYS": "0"}
    assert load(env, data_dir=tmp_path).recording_retention_days == 0
    with pytest.raises(ConfigError, match="TOWNHALL_RECORDING_RETENTION_DAYS"):
        load({"TOWNHALL_RECORDING_RETENTION_DAYS": "-1"}, data_dir=tmp_path)


@pytest.mark.parametrize(
    ("given", "used"),
    [
        (
            "postgresql://th:pw@db.internal:5432/townhall",
            "postgresql+asyncpg://th:pw@db.internal:5432/townhall",
        ),
        ("postgres://th@db/townhall", "postgresql+asyncpg://th@db/townhall"),
        ("postgresql+asyncpg://th@db/townhall", "postgresql+asyncpg://th@db/townhall"),
        ("sqlite:////var/lib/townhall/t.db", "sqlite+aiosqlite:////var/lib/townhall/t.db"),
        ("", ""),
    ],
)
def test_a_database_url_gets_the_async_driver_townhall_ships(
    tmp_path: Path, given: str, used: str
) -> None:
    assert load({"TOWNHALL_DATABASE_URL": given}, data_dir=tmp_path).database_url == used


def test_the_database_pool_is_small_by_default_so_twenty_nodes_fit_postgresql(
    tmp_path: Path,
) -> None:
    config = load({}, data_dir=tmp_path)
    per_process = config.database_pool_size + config.database_max_overflow
    assert 20 * per_process <= 100 - 3 - 10  # PostgreSQL's default, its superuser seats, headroom
    env = {"TOWNHALL_DATABASE_POOL_SIZE": "10", "TOWNHALL_DATABASE_MAX_OVERFLOW": "0"}
    configured = load(env, data_dir=tmp_path)
    assert (configured.database_pool_size, configured.database_max_overflow) == (10, 0)


def test_guests_create_spaces_unless_the_operator_says_otherwise(tmp_path: Path) -> None:
    assert load({}, data_dir=tmp_path).guests_create_spaces is True
    for off in ("false", "0", "no", "OFF"):
        config = load({"TOWNHALL_GUESTS_CREATE_SPACES": off}, data_dir=tmp_path)
        assert config.guests_create_spaces is False, off
    config = load({}, data_dir=tmp_path)
    assert (config.max_open_spaces_per_host, config.clip_quota_per_space_mb) == (3, 200)
    assert (config.storage_quota_per_identity_mb, config.storage_quota_per_address_mb) == (
        2000,
        5000,
    )
    env = {
        "TOWNHALL_STORAGE_QUOTA_PER_IDENTITY_MB": "0",
        "TOWNHALL_STORAGE_QUOTA_PER_ADDRESS_MB": "7",
    }
    quota = load(env, data_dir=tmp_path).storage_quota
    assert quota.per_identity is None
    assert quota.per_address is not None
    assert quota.per_address.burst == 7_000_000


def test_metrics_are_off_text_logs_and_no_request_lines_unless_configured(tmp_path: Path) -> None:
    quiet = load({}, data_dir=tmp_path)
    assert (quiet.metrics_token, quiet.log_format, quiet.access_log) == ("", "text", False)
    token = "0123456789abcdef0123"
    watched = load(
        {
            "TOWNHALL_METRICS_TOKEN": token,
            "TOWNHALL_LOG_FORMAT": "JSON",
            "TOWNHALL_ACCESS_LOG": "yes",
        },
        data_dir=tmp_path,
    )
    assert (watched.metrics_token, watched.log_format, watched.access_log) == (token, "json", True)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TOWNHALL_METRICS_TOKEN", "short"),
        ("TOWNHALL_METRICS_TOKEN", "has a space in the middle of it"),
        ("TOWNHALL_LOG_FORMAT", "xml"),
        ("TOWNHALL_ACCESS_LOG", "sometimes"),
    ],
)
def test_unusable_metrics_and_log_options_are_refused_by_name(
    tmp_path: Path, name: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=name):
        load({name: value}, data_dir=tmp_path)


def test_reminder_mail_is_off_until_an_smtp_server_and_sender_are_set(tmp_path: Path) -> None:
    assert load({}, data_dir=tmp_path).smtp.enabled is False
    smtp = load(
        {"TOWNHALL_SMTP_HOST": "mail.example.org", "TOWNHALL_SMTP_FROM": "r@example.org"},
        data_dir=tmp_path,
    ).smtp
    assert (smtp.enabled, smtp.port, smtp.tls) == (True, 587, "starttls")
    implicit = {
        "TOWNHALL_SMTP_HOST": "m",
        "TOWNHALL_SMTP_FROM": "r@x.org",
        "TOWNHALL_SMTP_TLS": "tls",
    }
    assert load(implicit, data_dir=tmp_path).smtp.port == 465
    with pytest.raises(ConfigError, match="TOWNHALL_SMTP_FROM"):
        load({"TOWNHALL_SMTP_HOST": "mail.example.org"}, data_dir=tmp_path)
    with pytest.raises(ConfigError, match="TOWNHALL_SMTP_TLS"):
        load({"TOWNHALL_SMTP_TLS": "ssl"}, data_dir=tmp_path)


def test_the_listen_backlog_is_the_os_maximum_unless_configured(tmp_path: Path) -> None:
    from townhall.config import SOMAXCONN, listen_backlog

    default = load({}, data_dir=tmp_path)
    assert listen_backlog(default) == max(128, min(65535, int(SOMAXCONN.read_text())))
    assert listen_backlog(load({"TOWNHALL_LISTEN_BACKLOG": "512"}, data_dir=tmp_path)) == 512
    with pytest.raises(ConfigError, match="TOWNHALL_LISTEN_BACKLOG"):
        load({"TOWNHALL_LISTEN_BACKLOG": "-1"}, data_dir=tmp_path)


def test_the_connection_cap_is_the_open_files_limit_less_a_reserve_unless_configured(
    tmp_path: Path,
) -> None:
    import resource

    from townhall.api.accept import FD_RESERVE, default_cap
    from townhall.app import create_app

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert default_cap() == max(64, soft - FD_RESERVE)
    assert create_app(load({}, data_dir=tmp_path)).state.connection_cap.limit == default_cap()
    capped = load({"TOWNHALL_MAX_CONNECTIONS": "300"}, data_dir=tmp_path)
    assert create_app(capped).state.connection_cap.limit == 300
    with pytest.raises(ConfigError, match="TOWNHALL_MAX_CONNECTIONS"):
        load({"TOWNHALL_MAX_CONNECTIONS": "-5"}, data_dir=tmp_path)
