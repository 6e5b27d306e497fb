"""What a deployment claims it can do, beyond chat and streaming (the baseline every model is probed for).

A model registration declares these (the API's `capabilities` object); the engine probes each declared one and
the verdict says which were verified, which failed and which were not declared. Absent means not declared:
today's nine chat probes, nothing more.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from jsonschema import Draft202012Validator, SchemaError, validators

CapabilityName = Literal["tools", "structuredOutput", "contextWindow", "tokenAccounting"]
CAPABILITY_NAMES: tuple[CapabilityName, ...] = ("tools", "structuredOutput", "contextWindow", "tokenAccounting")

MIN_CONTEXT_WINDOW = 256
MAX_CONTEXT_WINDOW = 2_000_000
MAX_OUTPUT_TOKENS = 1_000_000


@dataclass(frozen=True)
class Capabilities:
    """Declared capabilities of one model, as stored (camelCase JSON) and as the engine reads them.

    `context_window` and `max_output_tokens` are token counts the deployment advertises; `token_accounting`
    is whether it promises honest `usage` numbers (on by default: every OpenAI-compatible and Converse
    endpoint reports usage, so it is probed unless the registration says `false`). `output_schema` is the JSON
    schema a registration gave as `structuredOutput` (None: `true`, the probe's own schema); on the wire and in
    storage `structuredOutput` holds that schema object in place of `true`.
    """

    tools: bool = False
    structured_output: bool = False
    context_window: int | None = None
    max_output_tokens: int | None = None
    token_accounting: bool = True
    output_schema: Mapping[str, Any] | None = None

    def declared(self) -> tuple[CapabilityName, ...]:
        """The capabilities a run probes, in the order it probes them."""
        names: list[CapabilityName] = []
        if self.tools:
            names.append("tools")
        if self.structured_output:
            names.append("structuredOutput")
        if self.context_window is not None:
            names.append("contextWindow")
        if self.token_accounting:
            names.append("tokenAccounting")
        return tuple(names)

    def to_json(self) -> dict[str, Any]:
        return {
            "tools": self.tools,
            "structuredOutput": dict(self.output_schema) if self.output_schema is not None else self.structured_output,
            "contextWindow": self.context_window,
            "maxOutputTokens": self.max_output_tokens,
            "tokenAccounting": self.token_accounting,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Capabilities:
        """From stored JSON (already validated when it was accepted); missing keys take the defaults."""
        if not data:
            return cls()
        structured = data.get("structuredOutput", False)
        return cls(
            tools=bool(data.get("tools", False)),
            structured_output=bool(structured),
            output_schema=structured if isinstance(structured, Mapping) else None,
            context_window=data.get("contextWindow"),
            max_output_tokens=data.get("maxOutputTokens"),
            token_accounting=bool(data.get("tokenAccounting", True)),
        )


DECLARABLE_KEYS = ("tools", "structuredOutput", "contextWindow", "maxOutputTokens", "tokenAccounting")
BASELINE = ("chat", "streaming")


def check_capabilities(data: object) -> list[tuple[str, str]]:
    """(key, message) per problem of a declaration as a registration sends it; key "" is the object itself.

    The rules the API answers 422 for and the CLI refuses: booleans are JSON booleans, token counts integers
    in range, `maxOutputTokens` below `contextWindow`, `structuredOutput` true/false or a valid JSON schema of
    an object (local `$ref`s only: certq never fetches schemas), no other keys.
    """
    if not isinstance(data, Mapping):
        return [("", "must be a JSON object")]
    problems: list[tuple[str, str]] = []
    for key in data:
        if key in BASELINE:
            problems.append((str(key), "chat and streaming are the baseline every model is probed for; not declared"))
        elif key not in DECLARABLE_KEYS:
            problems.append((str(key), f"unknown capability (declare {', '.join(DECLARABLE_KEYS)})"))
    for key in ("tools", "tokenAccounting"):
        if key in data and not isinstance(data[key], bool):
            problems.append((key, "must be true or false"))
    if "structuredOutput" in data:
        problems.extend(("structuredOutput", message) for message in _schema_problems(data["structuredOutput"]))
    window, window_ok = data.get("contextWindow"), False
    if window is not None:
        if not _is_int(window) or not MIN_CONTEXT_WINDOW <= window <= MAX_CONTEXT_WINDOW:
            problems.append(("contextWindow", f"must be an integer from {MIN_CONTEXT_WINDOW} to {MAX_CONTEXT_WINDOW}"))
        else:
            window_ok = True
    output = data.get("maxOutputTokens")
    if output is not None:
        if not _is_int(output) or not 1 <= output <= MAX_OUTPUT_TOKENS:
            problems.append(("maxOutputTokens", f"must be an integer from 1 to {MAX_OUTPUT_TOKENS}"))
        elif window_ok and output >= window:
            problems.append(("maxOutputTokens", f"must be below contextWindow ({window})"))
    return problems


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _schema_problems(value: object) -> list[str]:
    if isinstance(value, bool):
        return []
    if not isinstance(value, Mapping):
        return ["must be true, false or a JSON schema (an object)"]
    if value.get("type") != "object":
        return ['a structured-output schema describes a JSON object: its "type" must be "object"']
    size = _schema_size(value, 1)
    if size is None:
        return [f"too large: at most {MAX_SCHEMA_NODES} keywords and values, nested at most {MAX_SCHEMA_DEPTH} deep"]
    if any("\x00" in text for text in _texts(value)):
        return ["must not contain NUL characters"]
    if not isinstance(value.get("$schema", ""), str):
        return ['"$schema" must be a string (a draft URI)']
    slow = next((key for key in _keys(value) if key in _SLOW_KEYWORDS), None)
    if slow is not None:
        # A worker checks answers against the schema on its event loop: a backtracking pattern or a quadratic
        # uniqueness check would stall every certification on it.
        return [f'"{slow}" is not accepted: certification schemas leave out regular expressions and uniqueItems']
    try:
        expanded = _expanded_size(value)
    except RecursionError:
        return ["its $refs are chained too deep"]
    if expanded is None:
        return ["a $ref refers to itself (directly or through others) or to nothing in the schema"]
    if expanded > MAX_EXPANDED_NODES:
        return [f"too large once its $refs are expanded: at most {MAX_EXPANDED_NODES} keywords and values"]
    remote = next((ref for ref in _refs(value) if not ref.startswith("#")), None)
    if remote is not None:
        return [f"$ref {remote[:100]!r} is not local (#/...): certq never fetches schemas"]
    # An unknown $schema falls back to draft 2020-12 (explicitly, so jsonschema does not warn).
    validator = validators.validator_for(value, default=Draft202012Validator)
    try:
        validator.check_schema(dict(value))
    except SchemaError as exc:
        return [f"not a valid JSON schema: {exc.message[:200]} (at {exc.json_path})"]
    return []


MAX_SCHEMA_DEPTH = 32
MAX_SCHEMA_NODES = 2_000
MAX_EXPANDED_NODES = 5_000
_SLOW_KEYWORDS = frozenset({"pattern", "patternProperties", "uniqueItems"})


def _texts(node: object) -> Iterator[str]:
    """Every key and string of a JSON value."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for key, child in node.items():
            yield str(key)
            yield from _texts(child)
    elif isinstance(node, list):
        for child in node:
            yield from _texts(child)


def _pointer(root: Mapping[str, Any], ref: str) -> object:
    """The node a local `#/a/b` reference names; a KeyError when there is none."""
    node: object = root
    for raw in ref[1:].split("/")[1:] if ref != "#" else []:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(ref)
    return node


def _expanded_size(root: Mapping[str, Any]) -> int | None:
    """How many nodes the schema has with every $ref replaced by what it names (capped just past
    MAX_EXPANDED_NODES, so fan-out cannot make big numbers); None for a cycle or a dangling reference."""
    cap = MAX_EXPANDED_NODES + 1
    sizes: dict[str, int] = {}
    expanding: set[str] = set()

    def size(node: object) -> int | None:
        total = 1
        if isinstance(node, Mapping):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#"):
                if ref in expanding:
                    return None
                if ref not in sizes:
                    try:
                        target = _pointer(root, ref)
                    except KeyError:
                        return None
                    expanding.add(ref)
                    counted = size(target)
                    expanding.discard(ref)
                    if counted is None:
                        return None
                    sizes[ref] = counted
                total += sizes[ref]
            children: list[object] = [child for key, child in node.items() if key != "$ref"]
        elif isinstance(node, list):
            children = list(node)
        else:
            return 1
        for child in children:
            counted = size(child)
            if counted is None:
                return None
            total = min(cap, total + counted)
        return total

    return size(root)


def _schema_size(node: object, depth: int) -> int | None:
    """How many nodes a schema has; None when it is deeper or larger than a declaration may be."""
    if depth > MAX_SCHEMA_DEPTH:
        return None
    children: list[object] = (
        list(node.values()) if isinstance(node, Mapping) else node if isinstance(node, list) else []
    )
    total = 1
    for child in children:
        counted = _schema_size(child, depth + 1)
        if counted is None:
            return None
        total += counted
        if total > MAX_SCHEMA_NODES:
            return None
    return total


_NAMED_SUBSCHEMAS = frozenset({"properties", "$defs", "definitions", "dependentSchemas"})


def _keys(node: object) -> Iterator[str]:
    """The keywords of a schema, at every depth (property names are not keywords)."""
    if isinstance(node, Mapping):
        for key, child in node.items():
            yield str(key)
            if key in _NAMED_SUBSCHEMAS and isinstance(child, Mapping):
                for subschema in child.values():
                    yield from _keys(subschema)
            else:
                yield from _keys(child)
    elif isinstance(node, list):
        for child in node:
            yield from _keys(child)


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, Mapping):
        for key, child in node.items():
            if key == "$ref" and isinstance(child, str):
                yield child
            else:
                yield from _refs(child)
    elif isinstance(node, list):
        for child in node:
            yield from _refs(child)
