"""Settings refuse values the clients would only trip over later, naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from certq.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:abc", "redis://127.0.0.1:99999", "redis://[::1", "redis://127.0.0.1:0"]
)
def test_a_redis_url_with_a_bad_port_or_host_names_redis_url(url: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(redis_url=url)
    assert raised.value.variable == "REDIS_URL"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u@127.0.0.1:abc/x",
        "postgresql://u@127.0.0.1:99999/x",
        "postgresql://u@[::1/x",
        "postgresql://u@h1:5432,h2:x/db",
    ],
)
def test_a_database_url_with_a_bad_port_or_host_names_database_url(url: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(database_url=url)
    assert raised.value.variable == "DATABASE_URL"


@pytest.mark.parametrize(
    ("field", "url"),
    [
        ("redis_url", "redis://:p%40ss@[::1]:6380/2"),
        ("redis_url", "unix:///run/redis.sock"),
        ("redis_url", "rediss://cache.example"),
        ("database_url", "postgresql://u:p:w@h1:5432,h2:5433/db"),
        ("database_url", "postgresql://u@[::1]:5432/db"),
        ("database_url", "postgres:///db?host=/run/pg"),
    ],
)
def test_good_urls_are_kept(field: str, url: str) -> None:
    assert getattr(load_settings(**{field: url}), field) == url  # type: ignore[arg-type]


@pytest.mark.parametrize("grace", ["inf", "nan", "-1"])
def test_shutdown_grace_must_be_a_finite_non_negative_number(grace: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(shutdown_grace_s=grace)
    assert raised.value.variable == "CERTIFICATION_SHUTDOWN_GRACE"


@pytest.mark.parametrize(
    "path",
    [
        "/api",
        "/api/board",
        "/api/v1/queue/admin",
        "/health",
        "/ready/x",
        "/live",
        "/metrics",
        "/openapi.json",
        "/",
        "/admin queues",
        "/admin/\tq",
        " /admin",
        "/admin/queues\n",
        "/admin?x=1",
        "/admin#top",
    ],
)
def test_a_board_path_the_api_serves_or_with_whitespace_names_bull_board_path(path: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(board_path=path)
    assert raised.value.variable == "BULL_BOARD_PATH"


@pytest.mark.parametrize(
    ("path", "kept"),
    [
        ("/admin/queues", "/admin/queues"),
        ("/board/", "/board"),
        ("/apiboard", "/apiboard"),
        ("/ops/health", "/ops/health"),
    ],
)
def test_other_board_paths_are_kept(path: str, kept: str) -> None:
    assert load_settings(board_path=path).board_path == kept


def test_a_refused_value_reads_as_plain_words_without_pydantics_prefix() -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(rate_limits="x=1")
    assert refused.value.variable == "CERTIFICATION_RATE_LIMITS"
    assert str(refused.value).startswith("CERTIFICATION_RATE_LIMITS: 'x=1' is not GROUP=COUNT/PERIOD")


def test_the_worker_health_port_binds_loopback_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORKER_HEALTH_HOST", raising=False)
    assert load_settings().worker_health_host == "127.0.0.1"
    monkeypatch.setenv("WORKER_HEALTH_HOST", "0.0.0.0")
    assert load_settings().worker_health_host == "0.0.0.0"


@pytest.mark.parametrize("entries", ["tok:root", "a,tok:", "tok:READ", ":read"])
def test_an_unknown_role_suffix_is_refused_naming_api_tokens(entries: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(api_tokens=entries)
    assert refused.value.variable == "API_TOKENS"


def test_suffixes_are_not_part_of_the_secret_and_a_bare_token_is_admin() -> None:
    settings = load_settings(api_tokens="r:read, c:certify,a:admin,bare")
    assert settings.tokens == ["r", "c", "a", "bare"]
    assert settings.token_roles == [("r", "read"), ("c", "certify"), ("a", "admin"), ("bare", "admin")]


def test_settings_read_a_dotenv_file_only_when_asked_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from certq.settings import DOTENV, load_settings

    (tmp_path / DOTENV).write_text("REDIS_HOST=from-dotenv\nCERTIFICATION_CONCURRENCY=7\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REDIS_HOST", raising=False)
    monkeypatch.delenv("CERTIFICATION_CONCURRENCY", raising=False)
    assert load_settings().redis_host == "127.0.0.1"  # a developer's own .env does not leak into callers
    from_file = load_settings(env_file=DOTENV)
    assert (from_file.redis_host, from_file.concurrency) == ("from-dotenv", 7)
    monkeypatch.setenv("CERTIFICATION_CONCURRENCY", "2")
    assert load_settings(env_file=DOTENV).concurrency == 2


def test_an_explicit_environment_mapping_is_all_settings_read(monkeypatch: pytest.MonkeyPatch) -> None:
    from certq.settings import load_settings

    monkeypatch.setenv("REDIS_HOST", "from-process")
    settings = load_settings(environ={"REDIS_HOST": "from-mapping", "unrelated": "x"}, concurrency=4)
    assert (settings.redis_host, settings.concurrency) == ("from-mapping", 4)
    assert load_settings(environ={}).redis_host == "127.0.0.1"
