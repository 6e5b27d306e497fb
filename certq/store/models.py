"""Model deployments: the one identity (uuid) every other table and the queue payload refer to."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from certq.store.base import MODEL_COLUMNS, Conn, Render, StoreBase, model_record
from certq.store.records import IdempotencyKey, ModelRecord, Page, Replay

_UPDATABLE = {
    "name",
    "provider",
    "api_model_id",
    "base_url",
    "api_key_env",
    "regions",
    "is_active",
    "served_model",
    "validity_s",
    "capabilities",
}


class ModelsMixin(StoreBase):
    async def create_model(
        self,
        *,
        name: str,
        provider: str,
        api_model_id: str,
        regions: Sequence[str],
        base_url: str | None = None,
        api_key_env: str | None = None,
        is_active: bool = True,
        served_model: str | None = None,
        validity_s: int | None = None,
        capabilities: dict[str, Any] | None = None,
        idempotency: IdempotencyKey | None = None,
        render: Render | None = None,
    ) -> ModelRecord | Replay:
        """Insert a model; with an idempotency key (and `render` for the stored answer) a repeat replays."""

        async def work(conn: Conn) -> ModelRecord:
            row = await conn.fetchrow(
                f"""
                INSERT INTO models (name, provider, api_model_id, base_url, api_key_env, regions, is_active,
                                    served_model, validity_s, capabilities)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {MODEL_COLUMNS}
                """,
                name,
                provider,
                api_model_id,
                base_url,
                api_key_env,
                list(regions),
                is_active,
                served_model,
                validity_s,
                capabilities or {},
            )
            assert row is not None
            return model_record(row)

        return await self._transact(work, idempotency, render)

    async def get_model(self, model_id: UUID | str) -> ModelRecord | None:
        row = await self._pool.fetchrow(f"SELECT {MODEL_COLUMNS} FROM models WHERE id = $1", UUID(str(model_id)))
        return None if row is None else model_record(row)

    async def get_models(self, model_ids: Sequence[UUID]) -> dict[UUID, ModelRecord]:
        rows = await self._pool.fetch(f"SELECT {MODEL_COLUMNS} FROM models WHERE id = ANY($1::uuid[])", list(model_ids))
        return {row["id"]: model_record(row) for row in rows}

    async def active_models(self) -> list[ModelRecord]:
        rows = await self._pool.fetch(f"SELECT {MODEL_COLUMNS} FROM models WHERE is_active ORDER BY created_at, id")
        return [model_record(row) for row in rows]

    async def list_models(self, *, page: int = 1, limit: int = 20, active: bool | None = None) -> Page:
        rows = await self._pool.fetch(
            f"""
            SELECT {MODEL_COLUMNS}, count(*) OVER () AS total FROM models
            WHERE ($1::boolean IS NULL OR is_active = $1)
            ORDER BY created_at DESC, id LIMIT $2 OFFSET $3
            """,
            active,
            limit,
            (page - 1) * limit,
        )
        total = (
            rows[0]["total"]
            if rows
            else await self._pool.fetchval(
                "SELECT count(*) FROM models WHERE ($1::boolean IS NULL OR is_active = $1)", active
            )
        )
        items = [model_record(_without_total(row)) for row in rows]
        return Page(items=items, total=int(total), page=page, limit=limit)

    async def update_model(self, model_id: UUID | str, changes: dict[str, Any]) -> ModelRecord | None:
        """Apply `changes` (column name -> value); None when the model does not exist.

        `capabilities` replaces the whole object (a PATCH sends every capability it declares).
        """
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        columns = sorted(changes)
        assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(columns, start=2))
        sets = f"{assignments}, updated_at = now()" if columns else "updated_at = updated_at"
        row = await self._pool.fetchrow(
            f"UPDATE models SET {sets} WHERE id = $1 RETURNING {MODEL_COLUMNS}",
            UUID(str(model_id)),
            *(list(changes[c]) if c == "regions" else changes[c] for c in columns),
        )
        return None if row is None else model_record(row)

    async def deactivate_model(self, model_id: UUID | str) -> ModelRecord | None:
        """Models are never deleted (their certifications keep pointing at them); they stop being certifiable."""
        return await self.update_model(model_id, {"is_active": False})


def _without_total(row: Any) -> dict[str, Any]:
    values = dict(row)
    values.pop("total", None)
    return values
