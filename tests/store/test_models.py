"""Model deployments: created, updated, deactivated (never deleted)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from certq.store import ModelRecord, Store

MakeModel = Callable[..., Awaitable[Any]]


async def test_update_changes_only_the_given_fields(store: Store, make_model: MakeModel) -> None:
    model = await make_model(regions=["a"])
    updated = await store.update_model(model.id, {"regions": ["a", "b"], "name": "renamed"})
    assert updated is not None and updated.regions == ["a", "b"] and updated.name == "renamed"
    assert updated.api_model_id == model.api_model_id and updated.updated_at >= model.updated_at


async def test_deactivated_model_is_kept_but_not_active(store: Store, make_model: MakeModel) -> None:
    model = await make_model()
    deactivated = await store.deactivate_model(model.id)
    assert deactivated is not None and not deactivated.is_active
    assert model.id not in {m.id for m in await store.active_models()}
    assert await store.get_model(model.id) == deactivated


async def test_unknown_model_reads_and_updates_are_none(store: Store) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    assert await store.get_model(missing) is None
    assert await store.update_model(missing, {"name": "x"}) is None


async def test_secret_values_cannot_be_stored_as_the_key_variable_name(store: Store, make_model: MakeModel) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await make_model(api_key_env="sk-live secret")


async def test_list_models_filters_on_active(store: Store, make_model: MakeModel) -> None:
    active: ModelRecord = await make_model()
    inactive: ModelRecord = await make_model(is_active=False)
    page = await store.list_models(limit=100, active=True)
    ids = {m.id for m in page.items}
    assert active.id in ids and inactive.id not in ids


async def test_capabilities_are_stored_as_given_and_an_update_replaces_them(
    store: Store, make_model: MakeModel
) -> None:
    plain = await make_model()
    assert plain.capabilities == {}
    declared = {"tools": True, "structuredOutput": {"type": "object"}, "contextWindow": 8192}
    model = await make_model(capabilities=declared)
    fetched = await store.get_model(model.id)
    assert model.capabilities == declared and fetched is not None and fetched.capabilities == declared
    updated = await store.update_model(model.id, {"capabilities": {"tokenAccounting": False}})
    assert updated is not None and updated.capabilities == {"tokenAccounting": False}
    assert (await store.get_models([model.id]))[model.id].capabilities == {"tokenAccounting": False}


async def test_capabilities_must_be_a_json_object(store: Store, make_model: MakeModel) -> None:
    model = await make_model()
    with pytest.raises(asyncpg.CheckViolationError):
        await store.update_model(model.id, {"capabilities": ["tools"]})
