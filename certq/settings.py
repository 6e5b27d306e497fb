"""certq's configuration: the only reader of os.environ (and of a `.env` file, when a process asks for one).

Settings validate themselves, the Redis topology rules included, and are built from an explicit mapping:
`load_settings()` reads `os.environ` only; the entry points also pass `env_file=".env"`, so a developer's
own `.env` never leaks into a library caller or the test suite.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from certq.credentials import CredentialPolicy, parse_credentials
from certq.durations import parse_duration_ms
from certq.egress import EgressPolicy, parse_egress

DOTENV = ".env"
"""The file the entry points (API, worker, CLI) read besides the environment, from the working directory."""

STARTUP_FAILURE = 3
"""Exit code of a process that refuses to start because of its configuration (uvicorn's number)."""

DEFAULT_BOARD_USERNAME = "admin"
DEFAULT_BOARD_PASSWORD = "admin123"
MIN_PRODUCTION_PASSWORD = 12
MIN_PRODUCTION_TOKEN = 24
"""Production refuses shorter secrets (a `secrets.token_urlsafe(24)` token is 32 characters)."""

_RATE_LIMIT = re.compile(r"^\s*([^=\s]+)\s*=\s*(\d+)\s*/\s*(\d+)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


BOARD_PATH_TAKEN = ("/api", "/health", "/ready", "/live", "/metrics", "/openapi.json")
"""Paths the API serves itself; the board may not be mounted over or under them."""


class SettingsError(Exception):
    """A configuration value is invalid; `variable` names the environment variable."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable
        self.message = message


def parse_rate_limits(text: str) -> dict[str, tuple[int, float]]:
    """`"us-east-1=10/60s,*=30/60s"` -> `{"us-east-1": (10, 60.0), "*": (30, 60.0)}` (tokens, seconds)."""
    limits: dict[str, tuple[int, float]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = _RATE_LIMIT.match(part)
        if match is None:
            raise ValueError(f"{part!r} is not GROUP=COUNT/PERIOD (e.g. us-east-1=10/60s)")
        group, count, period, unit = match.groups()
        seconds = int(period) * _UNIT_SECONDS[unit]
        if int(count) <= 0 or seconds <= 0:
            raise ValueError(f"{part!r}: count and period must be positive")
        limits[group] = (int(count), seconds)
    return limits


def _check_url(value: str) -> None:
    """Reject what the Redis and PostgreSQL clients would only trip over later (bad port, broken IPv6 host)."""
    from urllib.parse import urlsplit

    netloc = urlsplit(value).netloc.rpartition("@")[2]  # ValueError: "Invalid IPv6 URL"
    for host in netloc.split(","):  # PostgreSQL URLs may list several host:port
        port = host.partition("]")[2] if host.startswith("[") else host
        port = port.rpartition(":")[2] if ":" in port else ""
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError(f"port {port!r} is not a number between 1 and 65535")


def with_password(url: str, password: str) -> str:
    """`url` with its password replaced by `password`, percent-encoded (the user and the rest kept)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0] if at else ""
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{hosts}"))


def _split_csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


MIN_VALIDITY_S, MAX_VALIDITY_S = 60, 366 * 86_400

TOKEN_ROLES = ("read", "certify", "admin")
"""The roles an API_TOKENS entry may end in (`:read`), weakest first; an entry without one is admin."""


def parse_token(entry: str) -> tuple[str, str]:
    """`"s3cret:certify"` -> `("s3cret", "certify")`; `"s3cret"` -> `("s3cret", "admin")`."""
    secret, colon, role = entry.rpartition(":")
    if not colon:
        return entry, "admin"
    if role not in TOKEN_ROLES or not secret:
        raise ValueError("a role suffix is :read, :certify or :admin")  # the value may be secret: not echoed
    return secret, role


Topology = Literal["single", "sentinel", "cluster"]


def hash_tag(prefix: str) -> str | None:
    """The Redis Cluster hash tag of a key starting with `prefix` (`{myia}` -> `myia`), if the prefix fixes one."""
    start = prefix.find("{")
    if start < 0:
        return None
    end = prefix.find("}", start + 1)
    if end < 0 or end == start + 1:
        return None
    return prefix[start + 1 : end]


def require_hash_tag(prefix: str, variable: str = "BULL_QUEUE_PREFIX") -> None:
    """Refuse a Cluster prefix that would scatter one queue's keys over several slots."""
    if hash_tag(prefix) is None:
        suggestion = "{" + (prefix.strip("{}") or "myia") + "}"
        raise SettingsError(
            variable,
            f"{prefix!r} has no hash tag, so one queue's keys would land in different Redis Cluster slots "
            f"and its atomic scripts could not run; write the prefix with braces, e.g. {variable}={suggestion}",
        )


def redis_nodes(text: str, variable: str) -> list[tuple[str, int]]:
    """`"10.0.0.5:26379,10.0.0.6:26379"` -> [(host, port), ...]; SettingsError naming `variable` otherwise."""
    nodes: list[tuple[str, int]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, _, port = item.rpartition(":")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(variable, f"{item!r} is not host:port (e.g. 10.0.0.5:26379)")
        nodes.append((host or "127.0.0.1", int(port)))
    if not nodes:
        raise SettingsError(variable, "lists no host:port")
    return nodes


class Settings(BaseModel):
    """Every variable of the contract; field aliases are the variable names. Build with `load_settings()`
    (the environment) or `Settings.model_validate({...})` (an explicit mapping, e.g. in tests)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    redis_url: str | None = Field(None, alias="REDIS_URL")
    redis_host: str = Field("127.0.0.1", alias="REDIS_HOST")
    redis_port: int = Field(6379, alias="REDIS_PORT", ge=1, le=65535)
    redis_password: str | None = Field(None, alias="REDIS_PASSWORD")
    redis_db: int = Field(0, alias="REDIS_DB", ge=0)
    redis_sentinels: str | None = Field(None, alias="REDIS_SENTINELS")
    redis_sentinel_master: str = Field("mymaster", alias="REDIS_SENTINEL_MASTER")
    redis_sentinel_password: str | None = Field(None, alias="REDIS_SENTINEL_PASSWORD")
    redis_cluster_nodes: str | None = Field(None, alias="REDIS_CLUSTER_NODES")

    database_url: str = Field("postgresql://postgres@127.0.0.1:5432/certq", alias="DATABASE_URL")
    # Percent-encoded into DATABASE_URL by _database_password, so a password may hold any character.
    database_password: SecretStr | None = Field(None, alias="DATABASE_PASSWORD")

    queue_prefix: str = Field("myia", alias="BULL_QUEUE_PREFIX", min_length=1)
    queue_name: str = Field("model-certification", alias="CERTIFICATION_QUEUE_NAME", min_length=1)
    concurrency: int = Field(3, alias="CERTIFICATION_CONCURRENCY", ge=1, le=1000)
    timeout_ms: int = Field(300_000, alias="CERTIFICATION_TIMEOUT", ge=1)
    max_retries: int = Field(3, alias="CERTIFICATION_MAX_RETRIES", ge=0, le=100)
    certification_validity: str = Field("7d", alias="CERTIFICATION_VALIDITY")
    drift_score_margin: float = Field(10.0, alias="DRIFT_SCORE_MARGIN", ge=0, le=100, allow_inf_nan=False)
    # Empty or "off": no renewal. Else a duration: re-certify a standing certificate that long before it expires.
    certification_renew_before: str = Field("", alias="CERTIFICATION_RENEW_BEFORE")
    # Test hook only (tests/worker/test_scheduler_sigkill.py): a worker holds each slot's transaction open this long
    # before its commit, after logging "schedule slot held before commit", so a test can SIGKILL it there.
    test_hold_slot_s: float = Field(0.0, alias="CERTQ_TEST_HOLD_SLOT_S", ge=0, le=300, allow_inf_nan=False)
    rate_limits: str = Field("", alias="CERTIFICATION_RATE_LIMITS")
    shutdown_grace_s: float = Field(30.0, alias="CERTIFICATION_SHUTDOWN_GRACE", ge=0, allow_inf_nan=False)
    worker_health_port: int = Field(3002, alias="WORKER_HEALTH_PORT", ge=0, le=65535)
    worker_health_host: str = Field("127.0.0.1", alias="WORKER_HEALTH_HOST", min_length=1)

    api_host: str = Field("127.0.0.1", alias="API_HOST")
    api_port: int = Field(3001, alias="API_PORT", ge=0, le=65535)
    api_tokens: str = Field("", alias="API_TOKENS")
    board_path: str = Field("/admin/queues", alias="BULL_BOARD_PATH")
    board_username: str = Field(DEFAULT_BOARD_USERNAME, alias="BULL_BOARD_USERNAME")
    board_password: str = Field(DEFAULT_BOARD_PASSWORD, alias="BULL_BOARD_PASSWORD")
    board_read_only: bool = Field(False, alias="BULL_BOARD_READ_ONLY")

    env: Literal["development", "production"] = Field("development", alias="CERTQ_ENV")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field("INFO", alias="LOG_LEVEL")
    log_format: Literal["json", "text"] | None = Field(None, alias="LOG_FORMAT")
    log_dir: str | None = Field(None, alias="LOG_DIR")
    alert_webhook_url: str | None = Field(None, alias="ALERT_WEBHOOK_URL")
    model_credentials: str = Field("", alias="MODEL_CREDENTIALS")
    model_egress_allow: str = Field("", alias="MODEL_EGRESS_ALLOW")
    model_max_response_mb: int = Field(8, alias="MODEL_MAX_RESPONSE_MB", ge=1, le=1024)
    model_max_stream_s: float = Field(120.0, alias="MODEL_MAX_STREAM_SECONDS", gt=0, le=3600, allow_inf_nan=False)

    # The demo certifies this OpenAI-compatible endpoint instead of its local llama.cpp model when set.
    openai_base_url: str | None = Field(None, alias="OPENAI_BASE_URL")
    openai_api_key: SecretStr | None = Field(None, alias="OPENAI_API_KEY")
    demo_model: str | None = Field(None, alias="CERTQ_DEMO_MODEL")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("rate_limits")
    @classmethod
    def _valid_rate_limits(cls, value: str) -> str:
        parse_rate_limits(value)
        return value

    @field_validator("api_tokens")
    @classmethod
    def _valid_token_roles(cls, value: str) -> str:
        for index, entry in enumerate(_split_csv(value), 1):
            try:
                parse_token(entry)
            except ValueError as exc:
                raise ValueError(f"entry {index} has an unknown role: {exc}") from None
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        if value:
            _check_url(value)
        return value

    @field_validator("certification_validity")
    @classmethod
    def _valid_validity(cls, value: str) -> str:
        seconds = parse_duration_ms(value) // 1000
        if not MIN_VALIDITY_S <= seconds <= MAX_VALIDITY_S:
            raise ValueError(f"must be between 1m and 366d (got {value!r})")
        return value

    @field_validator("certification_renew_before")
    @classmethod
    def _valid_renew_before(cls, value: str) -> str:
        if value.strip().lower() in ("", "off"):
            return ""
        seconds = parse_duration_ms(value) // 1000
        if not MIN_VALIDITY_S <= seconds <= MAX_VALIDITY_S:
            raise ValueError(f"must be off or between 1m and 366d (got {value!r})")
        return value

    @field_validator("model_egress_allow")
    @classmethod
    def _valid_egress(cls, value: str) -> str:
        parse_egress(value, production=True)
        return value

    @model_validator(mode="before")
    @classmethod
    def _database_password(cls, data: Any) -> Any:
        password = data.get("DATABASE_PASSWORD", data.get("database_password")) if isinstance(data, dict) else None
        if isinstance(password, SecretStr):
            password = password.get_secret_value()
        if not password:
            return data
        key = "database_url" if "database_url" in data and "DATABASE_URL" not in data else "DATABASE_URL"
        url = data.get(key) or cls.model_fields["database_url"].default
        return {**data, key: with_password(str(url), str(password))}

    @field_validator("database_url")
    @classmethod
    def _postgres_scheme(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// (e.g. postgresql://user:password@host:5432/certq)")
        _check_url(value)
        return value

    @field_validator("board_path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        if any(char.isspace() or not char.isprintable() or char in "?#" for char in value):
            raise ValueError(f"{value!r} contains whitespace, control characters, '?' or '#'")
        path = value.rstrip("/") or "/"
        for taken in BOARD_PATH_TAKEN:
            if path == "/" or path == taken or path.startswith(taken + "/"):
                # Under /api the bearer check answers first, so the board's basic auth could never be used.
                raise ValueError(f"{path} would overlap {taken}, which the API serves; use e.g. /admin/queues")
        return path

    @field_validator("model_credentials")
    @classmethod
    def _valid_credentials(cls, value: str) -> str:
        parse_credentials(value)
        return value

    @model_validator(mode="after")
    def _redis_topology(self) -> Settings:
        # One rule for every process: e.g. a Redis Cluster prefix without a hash tag stops it at start-up.
        if self.redis_cluster_nodes and self.redis_sentinels:
            raise SettingsError("REDIS_CLUSTER_NODES", "set either REDIS_CLUSTER_NODES or REDIS_SENTINELS, not both")
        if self.topology == "cluster":
            redis_nodes(self.redis_cluster_nodes or "", "REDIS_CLUSTER_NODES")
            if self.redis_db:
                raise SettingsError("REDIS_DB", "Redis Cluster has only database 0")
            require_hash_tag(self.queue_prefix)
        elif self.topology == "sentinel":
            redis_nodes(self.redis_sentinels or "", "REDIS_SENTINELS")
            if not self.redis_sentinel_master.strip():
                raise SettingsError("REDIS_SENTINEL_MASTER", "names no master")
        return self

    @model_validator(mode="after")
    def _production_credentials(self) -> Settings:
        if self.env == "production":
            if self.test_hold_slot_s:
                raise SettingsError("CERTQ_TEST_HOLD_SLOT_S", "is a test hook; production refuses it")
            if not self.tokens:
                raise SettingsError("API_TOKENS", "production needs at least one bearer token")
            if self.board_password in ("", DEFAULT_BOARD_PASSWORD) or self.board_username == "":
                raise SettingsError("BULL_BOARD_PASSWORD", "production refuses default or empty dashboard credentials")
            if len(self.board_password) < MIN_PRODUCTION_PASSWORD:
                raise SettingsError(
                    "BULL_BOARD_PASSWORD",
                    f"production needs a dashboard password of at least {MIN_PRODUCTION_PASSWORD} characters",
                )
            for index, secret in enumerate(self.tokens, 1):
                if len(secret) < MIN_PRODUCTION_TOKEN:
                    raise SettingsError(
                        "API_TOKENS",
                        f"production needs bearer tokens of at least "
                        f"{MIN_PRODUCTION_TOKEN} characters (entry {index} is shorter)",
                    )
        return self

    @property
    def tokens(self) -> list[str]:
        """The bearer secrets, without their `:role` suffixes."""
        return [secret for secret, _ in self.token_roles]

    @property
    def token_roles(self) -> list[tuple[str, str]]:
        return [parse_token(entry) for entry in _split_csv(self.api_tokens)]

    @property
    def credential_policy(self) -> CredentialPolicy:
        return parse_credentials(self.model_credentials)

    @property
    def validity_s(self) -> int:
        """How long a verdict stands unless its model says otherwise (CERTIFICATION_VALIDITY)."""
        return parse_duration_ms(self.certification_validity) // 1000

    @property
    def renew_before_s(self) -> int | None:
        """Renew a standing certificate this long before it expires (CERTIFICATION_RENEW_BEFORE); None: off."""
        return parse_duration_ms(self.certification_renew_before) // 1000 if self.certification_renew_before else None

    @property
    def egress_policy(self) -> EgressPolicy:
        """Where model endpoints may be; empty MODEL_EGRESS_ALLOW: public only in production, any in development."""
        return parse_egress(self.model_egress_allow, production=self.env == "production")

    @property
    def rate_limit_table(self) -> dict[str, tuple[int, float]]:
        return parse_rate_limits(self.rate_limits)

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1

    @property
    def redis_dsn(self) -> str:
        """The single-server URL: REDIS_URL, else one built from REDIS_HOST/PORT/PASSWORD/DB."""
        if self.redis_url:
            return self.redis_url
        # Percent-encoded: redis-py decodes it, and a raw `@ / : # ? %` would break the URL.
        auth = f":{quote(self.redis_password, safe='')}@" if self.redis_password else ""
        return f"redis://{auth}{self.redis_host}:{self.redis_port}/{self.redis_db}"

    @property
    def topology(self) -> Topology:
        if self.redis_cluster_nodes:
            return "cluster"
        if self.redis_sentinels:
            return "sentinel"
        return "single"


def _variables() -> dict[str, str]:
    """Upper-cased variable name -> its alias, for every field (names are matched case-insensitively)."""
    return {(field.alias or name).upper(): field.alias or name for name, field in Settings.model_fields.items()}


def environment_values(environ: Mapping[str, str], env_file: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The contract's variables found in `environ`, over those of `env_file` (when it exists)."""
    variables = _variables()
    found: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        for key, value in dotenv_values(env_file).items():
            if value is not None and key.upper() in variables:
                found[variables[key.upper()]] = value
    for key, value in environ.items():
        if key.upper() in variables:
            found[variables[key.upper()]] = value
    return found


def load_settings(
    *, environ: Mapping[str, str] | None = None, env_file: str | os.PathLike[str] | None = None, **overrides: Any
) -> Settings:
    """Settings from `environ` (default: os.environ) and, where given, `env_file`; raise SettingsError naming
    the first bad variable.

    `overrides` are field names (e.g. `concurrency=5`) given by command-line flags; they win over the
    environment and are validated the same way.
    """
    values: dict[str, object] = dict(environment_values(os.environ if environ is None else environ, env_file))
    for name, value in overrides.items():
        if value is not None:
            values[Settings.model_fields[name].alias or name] = value
    try:
        return Settings.model_validate(values)
    except SettingsError:
        raise
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = error["loc"][0] if error["loc"] else ""
        field = Settings.model_fields.get(str(loc))
        variable = (field.alias if field is not None else None) or str(loc)
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, SettingsError):
            raise cause from None
        raise SettingsError(variable, error["msg"].removeprefix("Value error, ")) from None


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def read_secret(variable: str) -> str | None:
    """The value of the environment variable a model names for its API key (`apiKeyEnv`), or None if unset.

    Raises SettingsError for a name that cannot be an environment variable. Secrets are read here, at the edge,
    and handed on in memory only.
    """
    import os

    if not _ENV_NAME.match(variable):
        raise SettingsError(variable, "is not a valid environment variable name")
    value = os.environ.get(variable)
    return value if value else None
