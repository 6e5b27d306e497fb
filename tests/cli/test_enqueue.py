"""`enqueue` records the run in PostgreSQL and puts it on the queue the workers read, once per model+region."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from certq.cli.common import EXIT_NOT_FOUND
from certq.queue import Consumer, Queue
from certq.store import ModelRecord

Run = Callable[..., Any]
OnQueue = Callable[..., Any]


def test_enqueue_directly_records_and_queues_one_run(
    cli_env: str, run_cli: Run, on_queue: OnQueue, model: ModelRecord, migrated_database_url: str
) -> None:
    result = run_cli("enqueue", str(model.id), "--region", "local", "--json", "--database-url", migrated_database_url)
    assert result.code == 0, result.err
    answer = result.json()
    assert answer["status"] == "QUEUED" and answer["existing"] is False

    async def queued(queue: Queue, consumer: Consumer) -> Any:
        return await queue.get(answer["certificationId"])

    job = on_queue(queued)
    assert job is not None and job.state.value == "waiting"
    assert job.payload == {
        "certificationId": answer["certificationId"],
        "jobId": answer["jobId"],
        "modelId": str(model.id),
        "region": "local",
    }

    again = run_cli(
        "certify-model", str(model.id), "--region", "local", "--json", "--database-url", migrated_database_url
    )
    assert again.code == 0
    assert again.json()["existing"] is True and again.json()["certificationId"] == answer["certificationId"]


def test_enqueue_refuses_a_region_the_model_does_not_offer(
    cli_env: str, run_cli: Run, model: ModelRecord, migrated_database_url: str
) -> None:
    result = run_cli("enqueue", str(model.id), "--region", "eu-west-1", "--database-url", migrated_database_url)
    assert result.code == 1
    assert "does not offer region 'eu-west-1'" in result.err


def test_enqueue_of_an_unknown_model_exits_not_found(cli_env: str, run_cli: Run, migrated_database_url: str) -> None:
    result = run_cli("enqueue", str(uuid.uuid4()), "--region", "local", "--database-url", migrated_database_url)
    assert result.code == EXIT_NOT_FOUND


def test_enqueue_rejects_an_id_that_is_not_a_uuid(run_cli: Run) -> None:
    result = run_cli("enqueue", "gpt-4", "--region", "local")
    assert result.code == 2 and "is not a uuid" in result.err


async def test_enqueue_through_the_api_queues_the_run_the_api_recorded(
    cli_env: str, run_cli: Run, api_server: Any, redis_client: Any
) -> None:
    import httpx

    from certq.queue import QueueConfig

    async with httpx.AsyncClient(base_url=api_server.url, headers=api_server.headers) as http:
        created = await http.post(
            "/api/models",
            json={
                "name": "via-api",
                "provider": "openai",
                "apiModelId": "tiny",
                "baseUrl": "http://127.0.0.1:9/v1",
                "regions": ["local"],
            },
        )
    assert created.status_code == 201, created.text
    model_id = created.json()["id"]
    result = await asyncio.to_thread(
        run_cli,
        "enqueue",
        model_id,
        "--region",
        "local",
        "--api-url",
        api_server.url,
        "--token",
        api_server.token,
        "--json",
    )
    assert result.code == 0, result.err
    answer = result.json()
    job = await Queue(redis_client, QueueConfig(prefix=cli_env)).get(answer["certificationId"])
    assert job is not None and job.payload["modelId"] == model_id

    refused = await asyncio.to_thread(
        run_cli, "enqueue", model_id, "--region", "local", "--api-url", api_server.url, "--token", "wrong"
    )
    assert refused.code == 1 and "the API refused (401)" in refused.err


def test_enqueue_through_an_unreachable_api_exits_unavailable(run_cli: Run) -> None:
    from certq.embedded import free_port

    result = run_cli(
        "enqueue",
        str(uuid.uuid4()),
        "--region",
        "local",
        "--api-url",
        f"http://127.0.0.1:{free_port()}",
        "--token",
        "t",
    )
    assert result.code == 5 and "no answer from the API" in result.err


def test_enqueue_into_a_database_without_schema_says_to_migrate(
    cli_env: str, run_cli: Run, empty_database_url: str
) -> None:
    result = run_cli("enqueue", str(uuid.uuid4()), "--region", "local", "--database-url", empty_database_url)
    assert result.code == 1 and "run `certq migrate`" in result.err and "Traceback" not in result.err


@pytest.mark.parametrize("token", ["x\xe9", "x\udce9", "two words", "x\n"])
def test_a_token_that_cannot_be_a_header_exits_2(run_cli: Run, token: str) -> None:
    from certq.embedded import free_port

    result = run_cli(
        "enqueue",
        str(uuid.uuid4()),
        "--region",
        "local",
        "--api-url",
        f"http://127.0.0.1:{free_port()}",
        "--token",
        token,
    )
    assert result.code == 2 and "token must be ASCII" in result.err
