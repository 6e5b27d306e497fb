from __future__ import annotations

import pytest

from certq.queue.job import CorruptJob, Job, JobState, encode_json


def test_from_hash_reads_every_field() -> None:
    job = Job.from_hash(
        {
            b"id": b"j",
            b"state": b"failed",
            b"payload": b'{"a":1}',
            b"attempts": b"3",
            b"max_attempts": b"2",
            b"attempts_base": b"1",
            b"priority": b"high",
            b"group": b"eu",
            b"errors": b'[{"attempt":1}]',
            b"cancel": b"1",
            b"result": b"7",
            b"progress": b'{"d":1}',
            b"created_at": b"5",
            b"finished_at": b"9",
            b"category": b"TIMEOUT",
        }
    )
    assert (job.id, job.state, job.payload, job.priority, job.group) == ("j", JobState.FAILED, {"a": 1}, "high", "eu")
    assert (job.attempts, job.attempts_counted, job.attempts_left) == (3, 2, 0)
    assert (job.cancelled, job.result, job.progress, job.errors) == (True, 7, {"d": 1}, [{"attempt": 1}])
    assert job.error_category == "TIMEOUT"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"state": "waiting", "payload": "{}"}, "missing field 'id'"),
        ({"id": "x", "state": "bogus", "payload": "{}"}, "unreadable"),
        ({"id": "x", "state": "waiting", "payload": "[1]"}, "not a JSON object"),
        ({"id": "x", "state": "waiting", "payload": "{}", "attempts": "many"}, "unreadable"),
    ],
)
def test_from_hash_names_what_is_corrupt(raw: dict[str, str], reason: str) -> None:
    with pytest.raises(CorruptJob, match=reason):
        Job.from_hash(raw)


def test_encode_json_names_what_is_not_serializable() -> None:
    assert encode_json({"a": [1, "b"]}) == '{"a":[1,"b"]}'
    with pytest.raises(TypeError, match="result is not JSON-serializable"):
        encode_json({"a": object()}, "result")
