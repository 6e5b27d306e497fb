"""Idempotency-Key bookkeeping, inside the transaction of the work it protects.

The key row is inserted first: a concurrent request with the same key blocks on the primary key
until the first transaction commits, then finds the stored answer. A failed request rolls back its
key with everything else, so it can be retried with the same key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from certq.store.records import IdempotencyKey, Replay

if TYPE_CHECKING:
    from certq.store.base import Conn


async def claim_key(conn: Conn, key: IdempotencyKey) -> Replay | None:
    """None when this request owns the key (do the work, then `save_answer`); else the stored answer."""
    inserted = await conn.fetchval(
        """
        INSERT INTO idempotency_keys (scope, key, fingerprint, status_code, body) VALUES ($1, $2, $3, 0, '{}')
        ON CONFLICT (scope, key) DO NOTHING RETURNING true
        """,
        key.scope,
        key.key,
        key.fingerprint,
    )
    if inserted:
        return None
    row = await conn.fetchrow(
        "SELECT fingerprint, status_code, body FROM idempotency_keys WHERE scope = $1 AND key = $2",
        key.scope,
        key.key,
    )
    assert row is not None
    return Replay(status_code=row["status_code"], body=row["body"], matches=row["fingerprint"] == key.fingerprint)


async def save_answer(conn: Conn, key: IdempotencyKey, status_code: int, body: dict[str, Any]) -> None:
    await conn.execute(
        "UPDATE idempotency_keys SET status_code = $3, body = $4 WHERE scope = $1 AND key = $2",
        key.scope,
        key.key,
        status_code,
        body,
    )


async def purge_keys(conn: Conn, older_than_s: float) -> int:
    result = await conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)", float(older_than_s)
    )
    return int(result.split()[-1])
