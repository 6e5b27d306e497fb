"""One vocabulary of error categories: the enum, the store's lists and schema.sql's CHECK constraints agree."""

from __future__ import annotations

import re
from pathlib import Path

from certq.categories import RETRYABLE, ErrorCategory
from certq.store import ERROR_CATEGORIES
from certq.store.records import FINAL_ERROR_CATEGORIES, RETRYABLE_ERROR_CATEGORIES

SCHEMA = Path(__file__).resolve().parent.parent / "schema.sql"


def _checked_lists(sql: str) -> list[list[str]]:
    """Every `error_category IN (...)` list of the schema, as written."""
    return [
        re.findall(r"'([A-Z_]+)'", found)
        for found in re.findall(r"error_category IS NULL OR error_category IN \(([^)]*)\)", sql)
    ]


def test_the_schema_checks_exactly_the_categories_the_engine_names() -> None:
    lists = _checked_lists(SCHEMA.read_text())
    assert len(lists) == 2  # the table and the version 3 migration
    for words in lists:
        assert sorted(words) == sorted(c.value for c in ErrorCategory)


def test_the_store_derives_its_lists_from_the_enum() -> None:
    assert set(ERROR_CATEGORIES) == {c.value for c in ErrorCategory}
    assert set(RETRYABLE_ERROR_CATEGORIES) == {c.value for c in RETRYABLE}
    assert not set(FINAL_ERROR_CATEGORIES) & set(RETRYABLE_ERROR_CATEGORIES)
