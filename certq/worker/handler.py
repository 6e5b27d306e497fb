"""The certification job: load the model, run the probe battery, write the verdict fenced by attempt.

PostgreSQL holds the certification's status; the queue holds the job. Every write names the attempt
(`job.attempts`, which only grows), so a stale worker's late write is refused by the store. Retryable
verdicts (infrastructure errors) fail the attempt for a retry with backoff; final ones end the job.
A final verdict PostgreSQL could not take is kept with the job (certq.worker.verdicts) and written by
the next attempt without probing the model again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from redis.exceptions import RedisClusterException, RedisError

from certq.certification import ModelEndpoint, RunConfig, Verdict, run_certification
from certq.certification.capabilities import Capabilities
from certq.credentials import CredentialPolicy
from certq.jobs import CertificationJob, InvalidJobPayload
from certq.queue import ActiveJob, JobFailed, LeaseLost, StopReason
from certq.settings import SettingsError, read_secret
from certq.store import DEFAULT_VALIDITY_S, Store
from certq.store.outages import DATABASE_OUTAGE_ERRORS
from certq.worker.dependencies import Database, DatabaseUnavailable
from certq.worker.drift_watch import DriftWatch
from certq.worker.verdicts import PROGRESS_FIELD, VerdictSeal

log = logging.getLogger("certq.worker.handler")

Certify = Callable[..., Awaitable[Verdict]]

NOT_JOB_FAILURES = frozenset({"QUALITY_BELOW_THRESHOLD"})
"""A FAILED verdict with this category is the model's answer, not a failed job: the job completes."""


class CertificationHandler:
    """`await handler(active)` certifies the run a CertificationJob payload names (its model in its region)."""

    def __init__(
        self,
        database: Database,
        *,
        certify: Certify = run_certification,
        run_config: RunConfig | None = None,
        credentials: CredentialPolicy | None = None,
        validity_s: int = DEFAULT_VALIDITY_S,
        drift: DriftWatch | None = None,
    ) -> None:
        self.database = database
        self.validity_s = validity_s
        self.drift = drift
        self.credentials = credentials or CredentialPolicy({})
        self.certify = certify
        self.run_config = run_config
        self.verdicts = VerdictSeal(database.dsn)

    def _store(self) -> Store:
        if self.database.store is None:
            raise DatabaseUnavailable("postgresql not connected")
        return self.database.store

    async def _db(self, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except DATABASE_OUTAGE_ERRORS as exc:
            raise DatabaseUnavailable(str(exc)) from exc

    async def __call__(self, active: ActiveJob) -> dict[str, Any]:
        job, attempt = active.job, active.attempt
        try:
            spec = CertificationJob.from_payload(job.payload)
        except InvalidJobPayload as exc:
            log.warning(
                "job payload is not a certification job",
                extra={"job_id": job.id, "attempt": attempt, "field": exc.field, "error": exc.message},
            )
            raise JobFailed(exc.message, final=True, category="CONFIG_ERROR") from None
        certification_id = str(spec.certification_id)
        fields = {
            "job_id": job.id,
            "attempt": attempt,
            "certification_id": certification_id,
            "model_id": str(spec.model_id),
            "region": spec.region,
        }
        store = self._store()
        record = await self._db(store.get_certification(certification_id))
        if record is None:
            log.warning("certification not found", extra=fields)
            raise JobFailed(f"no certification {certification_id} in PostgreSQL", final=True, category="CONFIG_ERROR")
        # PostgreSQL is the source of truth: a payload naming another model or region is corrupt, and the
        # row is left for the reconciler rather than certified with the wrong target.
        if spec.model_id != record.model_id or spec.region != record.region:
            log.warning(
                "job payload does not match its certification",
                extra={**fields, "stored_model_id": str(record.model_id), "stored_region": record.region},
            )
            raise JobFailed(
                f"corrupt job: payload names model {spec.model_id} in region {spec.region}, but "
                f"certification {certification_id} is model {record.model_id} in region {record.region}",
                final=True,
                category="CONFIG_ERROR",
            )
        model_id, region = str(record.model_id), record.region
        if not await self._db(store.begin_attempt(certification_id, attempt)):
            log.info("certification skipped: cancelled, finished or owned by a newer attempt", extra=fields)
            return {"certificationId": certification_id, "skipped": True}
        kept = self.verdicts.open(job.progress, certification_id)
        if kept is not None:
            log.info("writing the verdict kept by an earlier attempt; the model is not probed again", extra=fields)
            return await self._finish(store, active, certification_id, kept, fields, kept_in=job.progress)
        try:
            endpoint = await self._endpoint(store, model_id, region)
        except JobFailed as exc:
            await self._db(store.record_attempt_failure(certification_id, attempt, exc.category, exc.message, True))
            raise
        seen: dict[str, Any] = {}
        try:
            verdict = await self.certify(endpoint, self._progress(active, seen), config=self.run_config)
        except asyncio.CancelledError:
            await self._stopped(store, active, certification_id)
            raise
        return await self._settle(store, active, certification_id, verdict, fields, seen)

    async def _endpoint(self, store: Store, model_id: str, region: str) -> ModelEndpoint:
        try:
            model = await self._db(store.get_model(model_id))
        except ValueError:  # not a UUID
            model = None
        if model is None:
            raise JobFailed(f"model {model_id} does not exist", final=True, category="CONFIG_ERROR")
        if not model.is_active:
            raise JobFailed(f"model {model.name} is deactivated", final=True, category="CONFIG_ERROR")
        if not model.offers(region):
            raise JobFailed(
                f"model {model.name} is not deployed in region {region}", final=True, category="CONFIG_ERROR"
            )
        api_key = None
        if model.api_key_env:
            # The scope is checked before the secret is read: an undeclared name or a host outside the
            # credential's scope sends nothing anywhere.
            target = ModelEndpoint(
                provider=model.provider, api_model_id=model.api_model_id, region=region, base_url=model.base_url
            ).target_url
            refusal = self.credentials.refusal(model.api_key_env, target)
            if refusal is not None:
                raise JobFailed(f"apiKeyEnv of {model.name}: {refusal}", final=True, category="CONFIG_ERROR")
            try:
                api_key = read_secret(model.api_key_env)
            except SettingsError as exc:
                raise JobFailed(f"apiKeyEnv: {exc.message}", final=True, category="CONFIG_ERROR") from None
            if api_key is None:
                # Names the variable, never a value.
                raise JobFailed(
                    f"environment variable {model.api_key_env} (apiKeyEnv of {model.name}) is not set on this worker",
                    final=True,
                    category="CONFIG_ERROR",
                )
        return ModelEndpoint(
            provider=model.provider,
            api_model_id=model.api_model_id,
            region=region,
            base_url=model.base_url,
            api_key=api_key,
            served_model=model.served_model,
            capabilities=Capabilities.from_json(model.capabilities),
        )

    def _progress(self, active: ActiveJob, seen: dict[str, Any]) -> Callable[[int, int], Awaitable[None]]:
        async def forward(done: int, total: int) -> None:
            seen.update(done=done, total=total)
            try:
                await active.progress({"done": done, "total": total})
            except LeaseLost:
                raise
            except (RedisError, OSError) as exc:
                # Progress is advisory: a Redis blip must not fail a certification that is going well.
                log.debug("progress not recorded", extra={"job_id": active.job.id, "error": str(exc)})

        return forward

    async def _settle(
        self,
        store: Store,
        active: ActiveJob,
        certification_id: str,
        verdict: Verdict,
        fields: dict[str, Any],
        seen: dict[str, Any],
    ) -> dict[str, Any]:
        job, attempt = active.job, active.attempt
        category, message = verdict.error_category, verdict.error_message or verdict.error_category or "failed"
        more_attempts = job.attempts_counted < job.max_attempts
        if verdict.retryable and more_attempts:
            await self._db(store.record_attempt_failure(certification_id, attempt, category, message, False))
            raise JobFailed(message, final=False, category=category)
        final = verdict.to_json()
        try:
            return await self._finish(store, active, certification_id, final, fields)
        except DatabaseUnavailable:
            await self._keep(active, certification_id, final, seen)
            raise

    async def _finish(
        self,
        store: Store,
        active: ActiveJob,
        certification_id: str,
        verdict: dict[str, Any],
        fields: dict[str, Any],
        *,
        kept_in: Any = None,
    ) -> dict[str, Any]:
        """Write a final verdict (Verdict.to_json()); `kept_in` is the progress it was kept in, dropped once written."""
        try:
            stored = await self._db(
                store.finish_certification(certification_id, active.attempt, verdict, validity_s=self.validity_s)
            )
        except asyncpg.PostgresError as exc:
            # Not an outage (those raise DatabaseUnavailable above): PostgreSQL refuses this verdict itself, so
            # writing it again cannot succeed; the run ends FAILED instead of staying PROCESSING.
            problem = f"the verdict could not be stored: {type(exc).__name__}: {str(exc)[:200]}"
            log.error("verdict refused by postgresql", extra={**fields, "error": problem})
            await self._db(
                store.record_attempt_failure(certification_id, active.attempt, "INTERNAL_ERROR", problem, True)
            )
            raise JobFailed(problem, final=True, category="INTERNAL_ERROR") from None
        if not stored:
            log.warning("verdict not stored: the attempt no longer owns the certification", extra=fields)
        elif self.drift is not None:
            await self.drift.after_verdict(store, certification_id)
        if isinstance(kept_in, dict):
            await self._record(active, {k: v for k, v in kept_in.items() if k != PROGRESS_FIELD})
        status, category = verdict.get("status"), verdict.get("errorCategory")
        if status == "FAILED" and category not in NOT_JOB_FAILURES:
            raise JobFailed(verdict.get("errorMessage") or category or "failed", final=True, category=category)
        log.info(
            "certification finished",
            extra={
                **fields,
                "status": status,
                "score": verdict.get("score"),
                "rating": verdict.get("rating"),
                "duration_ms": verdict.get("durationMs"),
            },
        )
        return {
            "certificationId": certification_id,
            "status": status,
            "passed": verdict.get("passed"),
            "score": verdict.get("score"),
            "rating": verdict.get("rating"),
            "durationMs": verdict.get("durationMs"),
        }

    async def _keep(
        self, active: ActiveJob, certification_id: str, verdict: dict[str, Any], seen: dict[str, Any]
    ) -> None:
        """PostgreSQL did not take a finished verdict: keep it with the job for the next attempt to write."""
        sealed = self.verdicts.seal(certification_id, verdict)
        if sealed is None:
            log.warning(
                "verdict too large to keep; the next attempt probes again",
                extra={"job_id": active.job.id, "certification_id": certification_id},
            )
        elif await self._record(active, {**seen, PROGRESS_FIELD: sealed}):
            log.info(
                "verdict kept with the job until postgresql takes writes",
                extra={"job_id": active.job.id, "certification_id": certification_id},
            )

    async def _record(self, active: ActiveJob, progress: dict[str, Any]) -> bool:
        try:
            await active.progress(progress)
        except (LeaseLost, RedisError, RedisClusterException, OSError) as exc:
            log.warning("job progress not recorded", extra={"job_id": active.job.id, "error": str(exc)})
            return False
        return True

    async def _stopped(self, store: Store, active: ActiveJob, certification_id: str) -> None:
        """Tell PostgreSQL why the run stopped, where this worker still owns it (shielded: we are being cancelled)."""
        reason = active.stop_reason
        if reason is StopReason.LEASE_LOST:
            return  # another worker owns the job; it writes the outcome
        if reason is StopReason.CANCELLED:
            write: Awaitable[Any] = store.mark_cancelled(certification_id)
        elif reason is None:  # the job's timeout cancelled us
            job = active.job
            last = job.attempts_counted >= job.max_attempts
            write = store.record_attempt_failure(
                certification_id, active.attempt, "TIMEOUT", f"certification timed out (attempt {active.attempt})", last
            )
        else:  # shutdown, or PostgreSQL went away: the job goes back to wait
            write = store.record_attempt_failure(
                certification_id, active.attempt, None, "released unfinished (worker stopping)", False
            )
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(write), 5.0)
