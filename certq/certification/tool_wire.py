"""How tool calls, tool results and structured output are spelled on each provider's wire (OpenAI, Converse)."""

from __future__ import annotations

import re
from typing import Any

import orjson

from certq.certification.chat import ChatRequest, ChatResult, Message, ToolCall

# ---- OpenAI-compatible chat completions ----


def openai_message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id or "", "content": message.content}
    if message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in message.tool_calls
            ],
        }
    return {"role": message.role, "content": message.content}


def openai_arguments(value: object) -> str:
    """The raw arguments text; a server that sends an object (some do) gets it serialised, not rejected."""
    if isinstance(value, str):
        return value
    return "" if value is None else orjson.dumps(value).decode()


def openai_tool_calls(value: object) -> list[ToolCall]:
    if not isinstance(value, list):
        return []
    calls: list[ToolCall] = []
    for item in value:
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(function, dict):
            continue
        name = function.get("name")
        call_id = item.get("id") if isinstance(item, dict) else None
        calls.append(
            ToolCall(
                name if isinstance(name, str) else "",
                openai_arguments(function.get("arguments")),
                call_id if isinstance(call_id, str) else "",
            )
        )
    return calls


def merge_tool_deltas(calls: dict[int, list[str]], deltas: list[Any]) -> None:
    """Streamed tool calls arrive as pieces keyed by index: the first names the call, the rest add arguments."""
    for delta in deltas:
        if not isinstance(delta, dict):
            continue
        index = delta.get("index")
        slot = calls.setdefault(index if isinstance(index, int) else len(calls), ["", "", ""])
        if isinstance(delta.get("id"), str):
            slot[0] = delta["id"]
        function = delta.get("function")
        if isinstance(function, dict):
            if isinstance(function.get("name"), str):
                slot[1] += function["name"]
            arguments = function.get("arguments")
            if arguments is not None:
                slot[2] += openai_arguments(arguments)


# ---- Bedrock Converse ----


def schema_tool(name: str) -> str:
    """The tool that carries a structured answer: Converse tool names allow [a-zA-Z0-9_-], 64 characters."""
    return (re.sub(r"[^a-zA-Z0-9_-]", "_", name) or "structured_output")[:64]


def converse_tool_spec(name: str, description: str, schema: Any) -> dict[str, Any]:
    return {"toolSpec": {"name": name, "description": description, "inputSchema": {"json": dict(schema)}}}


def converse_tool_call(use_id: object, name: object, arguments: object) -> ToolCall:
    raw = arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
    return ToolCall(name if isinstance(name, str) else "", raw, use_id if isinstance(use_id, str) else "")


def converse_messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """Converse turns: a tool result is a user turn's `toolResult` block; consecutive same-role turns merge,
    since Converse wants roles to alternate."""
    turns: list[dict[str, Any]] = []
    for m in messages:
        role = "user" if m.role == "tool" else m.role
        blocks: list[dict[str, Any]] = []
        if m.role == "tool":
            blocks.append({"toolResult": {"toolUseId": m.tool_call_id or "", "content": [{"text": m.content}]}})
        else:
            if m.content or not m.tool_calls:
                blocks.append({"text": m.content})
            for call in m.tool_calls:
                try:
                    arguments = orjson.loads(call.arguments or "{}")
                except orjson.JSONDecodeError:
                    arguments = {}
                blocks.append({"toolUse": {"toolUseId": call.id, "name": call.name, "input": arguments}})
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def structured_from_tool(result: ChatResult, tool: str) -> None:
    """The forced schema tool's input becomes the answer's text, as response_format would have given it."""
    for call in result.tool_calls:
        if call.name == tool:
            result.text = call.arguments
            result.structured_via = "tool"
            result.tool_calls = [c for c in result.tool_calls if c is not call]
            return


def converse_tool_config(request: ChatRequest) -> dict[str, Any] | None:
    """`toolConfig` for a request's tools and tool choice, and for its response schema: Converse has no json_schema
    response format; its documented way to structured output is a tool whose input schema is the schema, forced by
    toolChoice, so the tool's input is the answer."""
    tools = [converse_tool_spec(t.name, t.description, t.parameters) for t in request.tools]
    choice = request.tool_choice
    if request.response_schema is not None:
        schema = request.response_schema
        tools.append(
            converse_tool_spec(schema_tool(schema.name), "Return the answer as this tool's input.", schema.schema)
        )
        choice = schema_tool(schema.name)
    if not tools:
        return None
    config: dict[str, Any] = {"tools": tools}
    if choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif choice is not None and choice != "none":
        config["toolChoice"] = {"tool": {"name": choice}}
    return config
