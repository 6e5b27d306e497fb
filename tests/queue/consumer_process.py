"""A consumer process for the crash test: runs a Runner until killed; each handler start is recorded."""

from __future__ import annotations

import asyncio
import sys

import redis.asyncio as aioredis

from certq.queue import ActiveJob, QueueConfig, Runner


async def main(url: str, prefix: str, name: str, started_key: str) -> None:
    client = aioredis.from_url(url)
    config = QueueConfig(prefix=prefix, name=name)

    async def handler(active: ActiveJob) -> str:
        await client.lpush(started_key, active.job.id)  # type: ignore[misc]
        await asyncio.sleep(float(active.job.payload["work_s"]))
        return "done"

    await Runner(client, config, handler, concurrency=10, consumer_id="doomed").run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
