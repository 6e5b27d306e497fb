"""Capability flags (`--tools`, `--structured-output`, ...) of `certify` and `models`: parsed, checked, shown."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from certq.certification.capabilities import (
    MAX_CONTEXT_WINDOW,
    MAX_OUTPUT_TOKENS,
    MIN_CONTEXT_WINDOW,
    Capabilities,
    check_capabilities,
)
from certq.cli import EXIT_USAGE, CommandError

# The flag an operator fixes for each key check_capabilities names.
FLAGS = {
    "": "capabilities",
    "tools": "--tools",
    "structuredOutput": "--output-schema",
    "contextWindow": "--context-window",
    "maxOutputTokens": "--max-output-tokens",
    "tokenAccounting": "--no-token-accounting",
}
MAX_SCHEMA_BYTES = 32 * 1024


def add_capability_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("declared capabilities (each one declared is probed; none: chat only)")
    group.add_argument("--tools", action="store_true", default=None, help="the deployment calls tools (functions)")
    group.add_argument(
        "--structured-output",
        action="store_true",
        default=None,
        help="it answers JSON matching a schema (certq's probe schema; see --output-schema)",
    )
    group.add_argument(
        "--output-schema",
        metavar="FILE",
        help="the JSON schema (of an object) to certify structured output against; implies --structured-output",
    )
    group.add_argument(
        "--context-window",
        type=int,
        metavar="TOKENS",
        help=f"its advertised context window ({MIN_CONTEXT_WINDOW} to {MAX_CONTEXT_WINDOW})",
    )
    group.add_argument(
        "--max-output-tokens",
        type=int,
        metavar="TOKENS",
        help=f"the most tokens one answer may have (1 to {MAX_OUTPUT_TOKENS}, below --context-window)",
    )
    group.add_argument(
        "--no-token-accounting",
        action="store_true",
        default=None,
        help="it does not promise honest usage numbers: do not probe them",
    )


def capabilities_from_args(args: argparse.Namespace) -> dict[str, Any] | None:
    """The declaration the flags make, checked (None: no capability flag given); CommandError naming the flag."""
    declared: dict[str, Any] = {}
    if args.tools:
        declared["tools"] = True
    if args.output_schema is not None:
        declared["structuredOutput"] = _read_schema(args.output_schema)
    elif args.structured_output:
        declared["structuredOutput"] = True
    if args.context_window is not None:
        declared["contextWindow"] = args.context_window
    if args.max_output_tokens is not None:
        declared["maxOutputTokens"] = args.max_output_tokens
    if args.no_token_accounting:
        declared["tokenAccounting"] = False
    if not declared:
        return None
    problems = check_capabilities(declared)
    if problems:
        key, message = problems[0]
        raise CommandError(f"{FLAGS.get(key, key)}: {message}", EXIT_USAGE)
    return declared


def _read_schema(name: str) -> Any:
    path = Path(name)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CommandError(f"--output-schema: cannot read {name}: {exc.strerror or exc}", EXIT_USAGE) from None
    if len(raw) > MAX_SCHEMA_BYTES:
        raise CommandError(f"--output-schema: {name} is larger than {MAX_SCHEMA_BYTES} bytes", EXIT_USAGE)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CommandError(f"--output-schema: {name} is not JSON: {exc}", EXIT_USAGE) from None


def describe(data: Mapping[str, Any] | None) -> str:
    """One line for a terminal: `tools, structured output (declared schema), context window 8192, ...`."""
    capabilities = Capabilities.from_json(data)
    parts: list[str] = []
    if capabilities.tools:
        parts.append("tools")
    if capabilities.structured_output:
        parts.append("structured output" + (" (declared schema)" if capabilities.output_schema is not None else ""))
    if capabilities.context_window is not None:
        parts.append(f"context window {capabilities.context_window}")
    if capabilities.max_output_tokens is not None:
        parts.append(f"max output {capabilities.max_output_tokens}")
    parts.append("token accounting" if capabilities.token_accounting else "no token accounting")
    return "chat, " + ", ".join(parts)
