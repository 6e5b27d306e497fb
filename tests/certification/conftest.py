"""Fixtures for certification tests: a fast run configuration whose backoff sleeps are recorded, not slept."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from certq.certification import RunConfig
from certq.certification.localmodel import start_tiny_model_server, stop_llama_server


@dataclass
class SleepLog:
    delays: list[float] = field(default_factory=list)

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def sleeps() -> SleepLog:
    return SleepLog()


@pytest.fixture
def fast_config(sleeps: SleepLog) -> RunConfig:
    return RunConfig(
        connect_timeout_s=5.0,
        read_timeout_s=5.0,
        stream_idle_timeout_s=5.0,
        request_deadline_s=10.0,
        sleep=sleeps,
        rng=random.Random(7),
    )


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    """Static credentials from the environment only: no profile files, no instance metadata."""
    from tests.certification.stubs import ACCESS_KEY, SECRET_KEY

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


LLAMA_API_KEY = "sk-local-llama-test-key"


@pytest.fixture(scope="session")
def scripted_llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real llama-cpp-python server (API key LLAMA_API_KEY) serving the scripted tiny model: its /v1 URL."""
    url, process, _ = start_tiny_model_server(tmp_path_factory.mktemp("scripted"), "scripted", api_key=LLAMA_API_KEY)
    try:
        yield url
    finally:
        stop_llama_server(process)


@pytest.fixture(scope="session")
def random_llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real llama-cpp-python server serving random weights: protocol fine, answers nonsense."""
    url, process, _ = start_tiny_model_server(tmp_path_factory.mktemp("random"), "random")
    try:
        yield url
    finally:
        stop_llama_server(process)
