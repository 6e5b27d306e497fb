"""The HTTP API (Starlette): models, certification requests, health and metrics."""

from __future__ import annotations

from certq.api.app import create_app

__all__ = ["create_app"]
