"""certq's reliable job queue on Redis lists: producer (Queue), consumer (Consumer) and the processing loop (Runner)."""

from __future__ import annotations

from certq.queue.config import QueueConfig
from certq.queue.consumer import Claim, Consumer, Lease
from certq.queue.errors import InvalidJob, JobFailed, JobNotFound, JobStateError, LeaseLost, QueueError
from certq.queue.handling import ActiveJob, Handler, RunnerHooks, RunnerStats, StopReason
from certq.queue.job import FINISHED_STATES, PENDING_STATES, Job, JobState, Priority
from certq.queue.keys import QueueKeys
from certq.queue.protocol import LeaseStatus
from certq.queue.queue import JobSpec, Queue
from certq.queue.runner import Runner

__all__ = [
    "FINISHED_STATES",
    "PENDING_STATES",
    "ActiveJob",
    "Claim",
    "Consumer",
    "Handler",
    "InvalidJob",
    "Job",
    "JobFailed",
    "JobNotFound",
    "JobSpec",
    "JobState",
    "JobStateError",
    "Lease",
    "LeaseLost",
    "LeaseStatus",
    "Priority",
    "Queue",
    "QueueConfig",
    "QueueError",
    "QueueKeys",
    "Runner",
    "RunnerHooks",
    "RunnerStats",
    "StopReason",
]
