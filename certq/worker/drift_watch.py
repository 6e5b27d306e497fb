"""Tells people when a certified pair degrades, recovers or expires: a log line, a counter, the webhook.

Each event is recorded once in PostgreSQL (`certification_events`, unique per verdict and kind), so with
any number of workers exactly one sends it: the one whose insert won.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from certq.metrics import Metrics
from certq.store import DriftEvent, Store
from certq.worker.alerts import Alerter

log = logging.getLogger("certq.worker.drift")

EXPIRY_SWEEP_S = 30.0


class DriftWatch:
    def __init__(self, alerter: Alerter, metrics: Metrics, *, margin: float, validity_s: int) -> None:
        self.alerter = alerter
        self.margin = margin
        self.validity_s = validity_s
        self.transitions = metrics.certification_transitions

    async def after_verdict(self, store: Store, certification_id: str) -> None:
        """Compare a verdict just stored with the pair's previous one; never raises (a lost event is logged)."""
        try:
            event = await store.record_drift(certification_id, margin=self.margin, default_validity_s=self.validity_s)
        except Exception as exc:
            log.warning(
                "drift not recorded",
                extra={"certification_id": certification_id, "error": f"{type(exc).__name__}: {exc}"},
            )
            return
        if event is not None:
            self.announce(event)

    def announce(self, event: DriftEvent) -> None:
        self.transitions.labels(event.kind).inc()
        body = event.to_json()
        level = logging.INFO if event.kind == "recovered" else logging.WARNING
        log.log(
            level,
            f"certification {event.kind}",
            extra={
                "model_id": str(event.model_id),
                "region": event.region,
                "status": event.status,
                "score": event.score,
                "previous_status": event.previous_status,
                "previous_score": event.previous_score,
            },
        )
        self.alerter.send(body, name=f"{body['event']}:{event.certification_id}")

    async def sweep_expiries(self, store_of: object, stop: asyncio.Event) -> None:
        """Every ~30 s: record and announce certificates that ran out since the last sweep."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), EXPIRY_SWEEP_S * random.uniform(0.5, 1.5))
            store = getattr(store_of, "store", None)
            if stop.is_set() or store is None:
                continue
            try:
                events = await store.record_expiries(default_validity_s=self.validity_s)
            except Exception as exc:  # an outage now is retried next sweep
                log.warning("expiry sweep failed", extra={"error": f"{type(exc).__name__}: {exc}"})
                continue
            for event in events:
                self.announce(event)
