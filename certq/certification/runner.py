"""Runs the probe battery against one endpoint and turns what happened into a Verdict."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from certq.certification.bedrock import BedrockProvider
from certq.certification.capability_probes import capability_outcomes, capability_suite
from certq.certification.chat import ChatProvider, ChatResult, ModelEndpoint
from certq.certification.config import RunConfig
from certq.certification.errors import ErrorCategory, ProviderError
from certq.certification.identity import judge
from certq.certification.metrics import RunRecorder
from certq.certification.openai_compat import OpenAICompatProvider
from certq.certification.probes import SUITE, SUITE_VERSION, ProbeRun, ProbeSpec
from certq.certification.redaction import Redactor
from certq.certification.scoring import (
    CRITICAL_CAP,
    ProbeResult,
    Status,
    aggregate,
    rating,
    reliability_penalty,
    status_for,
)
from certq.certification.verdict import Verdict

log = logging.getLogger("certq.certification")

ProgressCallback = Callable[[int, int], Awaitable[None]]


class _CallbackFailed(Exception):
    """The caller's progress callback raised; its exception is re-raised unchanged after probes stop."""

    def __init__(self, original: Exception) -> None:
        super().__init__(repr(original))
        self.original = original


def make_provider(endpoint: ModelEndpoint, recorder: RunRecorder, redact: Redactor, config: RunConfig) -> ChatProvider:
    if endpoint.provider == "openai":
        return OpenAICompatProvider(endpoint, recorder, redact, config)
    if endpoint.provider == "bedrock":
        return BedrockProvider(endpoint, recorder, redact, config)
    raise ProviderError(ErrorCategory.CONFIG_ERROR, f"unknown provider {endpoint.provider!r}")


@dataclass
class _Spend:
    """What one probe cost: requests sent (retries included) and the tokens its answers reported."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def sent(self) -> None:
        """A request outside the chat calls (the deliberately invalid one) was sent."""
        self.requests += 1

    def add(self, result: ChatResult) -> None:
        if result.usage is not None:
            self.prompt_tokens += result.usage.prompt_tokens
            self.completion_tokens += result.usage.completion_tokens


class _Run:
    def __init__(self, endpoint: ModelEndpoint, config: RunConfig, on_progress: ProgressCallback | None) -> None:
        self.endpoint = endpoint
        self.config = config
        self.on_progress = on_progress
        self.recorder = RunRecorder()
        self.redact = Redactor([endpoint.api_key])
        self.capability_probes = capability_suite(endpoint.capabilities)
        self.capability_of = {p.spec.name: p.capability for p in self.capability_probes}
        self.suite: list[ProbeSpec] = [*SUITE, *(p.spec for p in self.capability_probes)]
        self.results = {
            spec.name: ProbeResult(
                spec.name,
                spec.weight,
                spec.critical,
                quality=spec.quality,
                outcome="skipped",
                pass_score=spec.pass_score,
                capability=self.capability_of.get(spec.name),
            )
            for spec in self.suite
        }
        self.shared: dict[str, ChatResult] = {}
        self.provider: ChatProvider | None = None
        self.done = 0

    def on_transient(self, error: ProviderError) -> None:
        self.recorder.on_error(error.category)
        self.recorder.on_retry()

    async def call_once(self, op: Callable[[], Awaitable[ChatResult]], spend: _Spend) -> ChatResult:
        """One try; its error goes back to the probe uncounted, since the error is what the probe grades."""
        spend.requests += 1
        result = await op()
        self.recorder.on_result(result, timed=False)
        spend.add(result)
        return result

    async def call_with_retries(
        self, op: Callable[[], Awaitable[ChatResult]], spend: _Spend, timed: bool = True
    ) -> ChatResult:
        """Retryable errors are retried with backoff (or the server's Retry-After); the rest propagate."""
        retry = 0
        while True:
            spend.requests += 1
            try:
                result = await op()
            except ProviderError as error:
                self.recorder.on_error(error.category)
                delay = self.config.backoff_s(retry + 1, error.retry_after_s) if error.retryable else None
                if delay is None or retry >= self.config.max_retries:
                    raise
                if self.recorder.retries >= self.config.retry_budget:
                    raise ProviderError(
                        error.category,
                        f"{error.message} (the run's retry budget of {self.config.retry_budget} is spent: "
                        f"the endpoint failed {sum(self.recorder.transient_counts.values())} of "
                        f"{self.recorder.requests} requests)",
                        status=error.status,
                        code=error.code,
                        retry_after_s=error.retry_after_s,
                    ) from None
                retry += 1
                self.recorder.on_retry()
                log.info(
                    "certify %s: %s (%s), retry %d in %.2fs",
                    self.endpoint.api_model_id,
                    error.category.value,
                    self.redact(error.message, 200),
                    retry,
                    delay,
                )
                await self.config.sleep(delay)
                continue
            self.recorder.on_result(result, timed=timed)
            spend.add(result)
            return result

    async def run_probe(self, spec: ProbeSpec, provider: ChatProvider) -> None:
        spend = _Spend()
        timed = spec.name not in self.capability_of
        probe = ProbeRun(
            provider,
            self.config,
            lambda op: self.call_with_retries(op, spend, timed),
            self.shared,
            once=lambda op: self.call_once(op, spend),
            capabilities=self.endpoint.capabilities,
            on_transient=self.on_transient,
            on_raw=spend.sent,
        )
        result = self.results[spec.name]
        started = time.perf_counter()
        try:
            checks = await spec.run(probe)
        except ProviderError as error:
            result.outcome = "error"
            result.error_category = error.category
            result.error_message = self.redact(error.message)
            raise
        finally:
            result.latency_ms = (time.perf_counter() - started) * 1000.0
            result.requests = spend.requests
            result.prompt_tokens, result.completion_tokens = spend.prompt_tokens, spend.completion_tokens
            result.excerpt = None if probe.excerpt is None else self.redact(probe.excerpt, 200)
        result.outcome = "scored"
        result.checks = checks
        for check in checks:
            check.detail = self.redact(check.detail, 200)
        self.done += 1
        if self.on_progress is not None:
            try:
                await self.on_progress(self.done, len(self.suite))
            except Exception as exc:
                raise _CallbackFailed(exc) from exc

    async def run_phase(self, specs: list[ProbeSpec], provider: ChatProvider) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for spec in specs:
                    group.create_task(self.run_probe(spec, provider), name=f"probe:{spec.name}")
        except BaseExceptionGroup as failures:
            raise _first_cause(failures) from None

    async def execute(self) -> None:
        provider = self.provider = make_provider(self.endpoint, self.recorder, self.redact, self.config)
        try:
            for phase in sorted({s.phase for s in self.suite}):
                await self.run_phase([s for s in self.suite if s.phase == phase], provider)
        finally:
            # Shielded so a cancelled run still closes its sockets before the cancellation propagates.
            await asyncio.shield(provider.aclose())


def _first_cause(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception to surface from a phase: the caller's own callback error, else a provider error, else a bug."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for wanted in (_CallbackFailed, ProviderError):
        for leaf in leaves:
            if isinstance(leaf, wanted):
                return leaf
    return leaves[0]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def run_certification(
    endpoint: ModelEndpoint,
    on_progress: ProgressCallback | None = None,
    *,
    config: RunConfig | None = None,
) -> Verdict:
    """Certify one deployment: run the suite, score it, and classify any failure.

    Never raises for provider or endpoint problems (they become the verdict's `error_category`); raises
    what `on_progress` raised, and propagates cancellation after closing every connection.
    """
    run = _Run(endpoint, config or RunConfig(), on_progress)
    started_wall, started = time.time(), time.perf_counter()
    error: ProviderError | None = None
    try:
        async with asyncio.timeout(run.config.run_deadline_s):
            await run.execute()
    except ProviderError as exc:
        error = exc
    except TimeoutError:
        error = ProviderError(
            ErrorCategory.TIMEOUT, f"the certification did not finish within {run.config.run_deadline_s:g}s"
        )
    except _CallbackFailed as exc:
        raise exc.original from None
    except Exception:
        log.exception("certify %s: internal error", endpoint.api_model_id)
        error = ProviderError(ErrorCategory.INTERNAL_ERROR, "the certifier failed; see the worker log")
    return _verdict(run, error, started_wall, time.perf_counter() - started)


def _verdict(run: _Run, error: ProviderError | None, started_wall: float, elapsed_s: float) -> Verdict:
    results = list(run.results.values())
    metrics = run.recorder.summary()
    metrics["suiteVersion"] = SUITE_VERSION
    # An endpoint may echo the run's key as its model name: what it reported is masked like any other text.
    reported = sorted({run.redact(name, 120) for name in run.recorder.models_reported})
    metrics["modelReported"] = reported
    model_id = getattr(run.provider, "model_id", None)
    if isinstance(model_id, str) and model_id != run.endpoint.api_model_id:
        metrics["modelIdUsed"] = model_id
    quirks = getattr(run.provider, "quirks", None)
    if quirks:
        metrics["compatibilityFallbacks"] = sorted(quirks)
    identity = judge(run.endpoint.provider, run.endpoint.api_model_id, run.endpoint.served_model, reported)
    metrics["modelIdentity"] = identity.to_json()
    if identity.finding == "unreported" and run.recorder.answers > 0:
        metrics["warnings"] = [identity.message]
    capabilities = capability_outcomes(
        run.endpoint.capabilities,
        {name: (r.checks if r.outcome == "scored" else None) for name, r in run.results.items()},
    )
    status: Status
    retry_after_s: float | None = None
    if error is not None:
        for result in results:
            if result.outcome == "skipped":
                result.error_message = f"not run: the certification stopped on {error.category.value}"
        message: str | None = run.redact(error.message)
        log.info("certify %s: %s (%s)", run.endpoint.api_model_id, error.category.value, message)
        status, score, category, retryable = "FAILED", 0, error.category.value, error.retryable
        retry_after_s = error.retry_after_s if error.retryable else None
    else:
        summary = aggregate(results)
        penalty = reliability_penalty(run.recorder.availability)
        score, retryable = max(0, summary.score - penalty), False
        metrics["reliability"]["scorePenalty"] = penalty
        status = status_for(score, summary.critical_failures, run.config.certify_score, run.config.warning_score)
        if capabilities.absent:
            # Declared and not there at all (e.g. tools, and no valid call): like a failed critical probe.
            status, score = "FAILED", min(score, CRITICAL_CAP)
        elif capabilities.failed and status == "CERTIFIED":
            status = "QUALITY_WARNING"
        category, message = None, None
        if identity.finding == "mismatch":
            # The answers may be fine; they are another model's, so nothing here certifies this one.
            status, score = "FAILED", min(score, CRITICAL_CAP)
            category, message = ErrorCategory.MODEL_MISMATCH.value, identity.message
        elif status != "CERTIFIED":
            category = ErrorCategory.QUALITY_BELOW_THRESHOLD.value
            reasons = [f"score {score} < {run.config.certify_score}"] if score < run.config.certify_score else []
            probes = [name for name in summary.critical_failures if name != "answer_quality"]
            if probes:
                reasons.append("critical probe failed: " + ", ".join(probes))
            if "answer_quality" in summary.critical_failures:
                reasons.append("answer-quality probes average below 50%")
            if summary.failed_probes:
                reasons.append("failed: " + ", ".join(summary.failed_probes))
            if penalty:
                reasons.append(f"{penalty} points off for reliability (availability {run.recorder.availability:.0%})")
            if capabilities.failed:
                reasons.append(_capability_reasons(run, capabilities.failed, capabilities.absent))
            message = "; ".join(reasons)
    return Verdict(
        status=status,
        passed=status == "CERTIFIED",
        score=score,
        rating="F" if error is not None else rating(score),
        test_results=[r.to_json() for r in results],
        metrics=metrics,
        error_category=category,
        error_message=message,
        retryable=retryable,
        duration_ms=round(elapsed_s * 1000),
        started_at=_iso(started_wall),
        finished_at=_iso(started_wall + elapsed_s),
        suite_version=SUITE_VERSION,
        provider=run.endpoint.provider,
        api_model_id=run.endpoint.api_model_id,
        region=run.endpoint.region,
        retry_after_s=retry_after_s,
        capabilities=capabilities.to_json(),
    )


def _capability_reasons(run: _Run, failed: Sequence[str], absent: Sequence[str]) -> str:
    parts = []
    for probe in run.capability_probes:
        if probe.capability in failed:
            detail = run.results[probe.spec.name].detail()
            label = "not offered" if probe.capability in absent else "flawed"
            parts.append(f"{probe.capability} ({label}: {detail})")
    return "declared capability failed: " + "; ".join(parts)
