"""Alerts (jobs that failed for good, certification drift): a log line, plus a webhook POST when configured.

The POST runs in the background with a bounded number of tries, each bounded in time, and a bounded
backlog: a slow or dead webhook never holds up a job or the worker's shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from certq.metrics import Metrics

log = logging.getLogger("certq.worker.alerts")


class Alerter:
    """Sends `job failed for good` alerts to `url` (a JSON POST) without ever blocking its caller."""

    def __init__(
        self,
        url: str | None,
        *,
        metrics: Metrics | None = None,
        timeout_s: float = 5.0,
        tries: int = 3,
        retry_delay_s: float = 0.5,
        max_pending: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.metrics = metrics
        self.timeout_s = timeout_s
        self.tries = tries
        self.retry_delay_s = retry_delay_s
        self.max_pending = max_pending
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def job_failed(self, alert: dict[str, Any]) -> None:
        """Log the final failure at ERROR and, with a webhook, post `alert` in the background."""
        log.error(
            "job failed for good",
            extra={
                "job_id": alert.get("jobId"),
                "attempt": alert.get("attempts"),
                "state": "failed",
                "duration_ms": alert.get("durationMs"),
                "error_category": alert.get("errorCategory"),
                "error": alert.get("errorMessage"),
                "alert": alert,
            },
        )
        self.send(alert, name=f"alert-{alert.get('jobId')}")

    def send(self, alert: dict[str, Any], *, name: str) -> None:
        """Post `alert` to the webhook in the background (when one is configured); never blocks."""
        if not self.url:
            return
        if len(self._pending) >= self.max_pending:
            self._count("dropped")
            log.warning(
                "alert dropped: webhook backlog full",
                extra={"job_id": alert.get("jobId"), "pending": len(self._pending)},
            )
            return
        task = asyncio.create_task(self._post(alert), name=name)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _post(self, alert: dict[str, Any]) -> None:
        assert self.url is not None
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s, transport=self._transport)
        problem = "no try made"
        for attempt in range(1, self.tries + 1):
            try:
                response = await asyncio.wait_for(self._client.post(self.url, json=alert), self.timeout_s)
            except (httpx.HTTPError, TimeoutError, OSError) as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if response.is_success:
                    self._count("sent")
                    return
                problem = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code != 429:
                    break  # the webhook refuses this alert; asking again will not change its mind
            if attempt < self.tries:
                await asyncio.sleep(self.retry_delay_s * 2 ** (attempt - 1))
        self._count("failed")
        # The URL may embed a token (Slack-style webhooks), so it is never logged.
        log.warning("alert webhook failed", extra={"job_id": alert.get("jobId"), "error": problem})

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.alerts.labels(outcome).inc()

    async def close(self, wait_s: float = 2.0) -> None:
        """Give alerts in flight up to `wait_s` to go out, then stop them."""
        if self._pending:
            _, still = await asyncio.wait(set(self._pending), timeout=wait_s)
            for task in still:
                task.cancel()
            if still:
                await asyncio.gather(*still, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
