"""The queue's exceptions: QueueError is the root; JobFailed is raised by handlers."""

from __future__ import annotations


class QueueError(Exception):
    """Root of every error the queue raises."""


class ScriptReplyError(QueueError):
    """A Lua script returned something its header does not allow: the Lua and the Python disagree (a bug)."""


class JobNotFound(QueueError):
    """No job with this id."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id!r}")
        self.job_id = job_id


class InvalidJob(QueueError, ValueError):
    """Enqueue was refused: `field` names the bad argument (e.g. a payload that is not JSON-serializable)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class JobStateError(QueueError):
    """The job is not in a state that allows this operation (e.g. retrying a job that has not failed)."""

    def __init__(self, job_id: str, state: str, message: str) -> None:
        super().__init__(f"job {job_id!r} is {state}: {message}")
        self.job_id = job_id
        self.state = state


class LeaseLost(QueueError):
    """This consumer no longer holds the job's lease (it expired, was recovered, or the job was removed);
    its complete/fail/progress call was rejected and the job's fate is someone else's now."""

    def __init__(self, job_id: str, attempt: int | None = None) -> None:
        super().__init__(f"lease lost on job {job_id!r}" + (f" (attempt {attempt})" if attempt else ""))
        self.job_id = job_id
        self.attempt = attempt


class JobFailed(Exception):
    """Raised by a handler: the attempt failed. Retried with backoff unless `final` (then straight to failed).

    `category` is a program-readable word (e.g. "TIMEOUT", "AUTH_ERROR") stored with the error.
    """

    def __init__(self, message: str, *, final: bool = False, category: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.final = final
        self.category = category
