"""Loopback stubs that implement the declarable capabilities, right ("ok") and in each typical wrong way.

OpenAI-compatible behaviours: `tool-bad-args`, `tool-wrong-function`, `tool-schema-break`, `tool-ignores-result`,
`no-tools`, `tools-400` (tools); `schema-500`, `json-breaks-schema`, `json-fenced` (structured output); `ctx-500`,
`ctx-truncate`, `ctx-small`, `ctx-accepts-all` (context window); `usage-static`, `usage-over-max`, `usage-bad-total`,
`stream-usage-differs` (token accounting); hostile: `ctx-negative-usage`, `ctx-tiny-lines` (usage numbers chosen to
blow up the long prompts), `usage-huge` (2**62 prompt tokens), `tool-deep-args` (arguments nested 10,000
deep), `tool-huge-args` (400 KB of arguments). The model's window is `WINDOW` tokens (one token per word, see
`count_tokens`). Bedrock: model ids `ok:...` and `tool-wrong-function:...`.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import unquote

from tests.certification.stubs import (
    BedrockHandler,
    OpenAIHandler,
    bedrock_event,
    count_tokens,
    verify_sigv4,
)

WINDOW = 4096
SMALL_WINDOW = 1024  # what `ctx-small` and `ctx-truncate` really serve, whatever is declared
PERSON = {"name": "Alice", "age": 30}
_KEY = re.compile(r"stored under the key '([^']+)'")
_VAULT = re.compile(r"the vault code is (\S+)\.")


def tool_arguments(behaviour: str, prompt: str) -> tuple[str, str]:
    """(function name, raw arguments) the stub's model calls for the secret-number question."""
    match = _KEY.search(prompt)
    key = match.group(1) if match else "unknown"
    if behaviour == "tool-wrong-function":
        return "get_weather", json.dumps({"city": "Paris"})
    if behaviour == "tool-bad-args":
        return "get_secret_number", '{"key": "' + key  # cut short: not JSON
    if behaviour == "tool-deep-args":
        return "get_secret_number", "[" * 10_000 + "]" * 10_000
    if behaviour == "tool-huge-args":
        return "get_secret_number", "[" * 200_000 + "]" * 200_000
    if behaviour == "tool-schema-break":
        return "get_secret_number", json.dumps({"id": key, "verbose": True})
    return "get_secret_number", json.dumps({"key": key})


def final_answer(behaviour: str, tool_result: str) -> str:
    if behaviour == "tool-ignores-result":
        return "I could not find it."
    try:
        number = json.loads(tool_result).get("secret_number")
    except (json.JSONDecodeError, AttributeError):
        number = None
    return f"The secret number is {number}."


def structured_answer(behaviour: str, schema: dict[str, Any]) -> str:
    value: object = schema.get("examples", [PERSON])[0]
    if behaviour == "json-breaks-schema":
        value = {"name": "Alice", "age": "thirty"}
    text = json.dumps(value)
    return f"```json\n{text}\n```" if behaviour == "json-fenced" else text


class CapabilityOpenAIHandler(OpenAIHandler):
    def respond(self, body: dict[str, Any]) -> None:
        behaviour = self.state.behaviour
        messages = body.get("messages", [])
        texts = [str(m.get("content") or "") for m in messages]
        last = texts[-1] if texts else ""
        tokens = count_tokens(texts)
        if "vault code" in last:
            return self._context(body, behaviour, last, tokens)
        if body.get("tools") and behaviour == "tools-400":
            error = {"message": "tools is not supported by this model", "type": "invalid_request_error"}
            return self._json(400, {"error": error | {"param": "tools"}})
        if body.get("response_format") and behaviour == "schema-500":
            return self._json(500, {"error": {"message": "grammar compilation failed", "type": "server_error"}})
        if body.get("tools") and behaviour != "no-tools":
            if messages and messages[-1].get("role") == "tool":
                return self._answer(body, final_answer(behaviour, last), "stop", tokens)
            name, arguments = tool_arguments(behaviour, last)
            call = {"id": "call_stub_1", "type": "function", "function": {"name": name, "arguments": arguments}}
            return self._answer(body, None, "tool_calls", tokens, [call])
        response_format = body.get("response_format") or {}
        if response_format.get("type") == "json_schema":
            schema = response_format["json_schema"]["schema"]
            return self._answer(body, structured_answer(behaviour, schema), "stop", tokens)
        if behaviour.startswith(("usage-", "stream-usage")) and "Count from 1 to 200" in last:
            limit = int(body.get("max_tokens", 256))
            text = " ".join(str(i) for i in range(1, limit + 1))
            return self._answer(body, text, "length", tokens, accounting=True)
        return super().respond(body)

    def _context(self, body: dict[str, Any], behaviour: str, prompt: str, tokens: int) -> None:
        if behaviour == "ctx-negative-usage":
            tokens = -(10**18) + 10 * prompt.count("Line ")
        elif behaviour == "ctx-tiny-lines":
            tokens = 100 + prompt.count("Line ") // 8
        if behaviour in ("ctx-negative-usage", "ctx-tiny-lines"):
            return self._answer(body, "I do not know.", "stop", tokens)
        window = SMALL_WINDOW if behaviour in ("ctx-small", "ctx-truncate") else WINDOW
        if tokens > window and behaviour != "ctx-accepts-all":
            if behaviour == "ctx-500":
                return self._json(500, {"error": {"message": "CUDA error: out of memory", "type": "server_error"}})
            if behaviour == "ctx-truncate":
                return self._answer(body, "I do not know.", "stop", window)  # the start fell off, silently
            message = f"This model's maximum context length is {window} tokens, you sent {tokens}"
            return self._json(
                400,
                {"error": {"message": message, "type": "invalid_request_error", "code": "context_length_exceeded"}},
            )
        match = _VAULT.search(prompt)
        return self._answer(body, match.group(1) if match else "I do not know.", "stop", tokens)

    def _answer(
        self,
        body: dict[str, Any],
        text: str | None,
        finish: str,
        prompt_tokens: int,
        tool_calls: list[dict[str, Any]] | None = None,
        accounting: bool = False,
    ) -> None:
        """`accounting`: the token-accounting prompts, the only ones the `usage-*` behaviours miscount."""
        behaviour = self.state.behaviour if accounting or not self.state.behaviour.startswith("usage-") else "ok"
        completion = len((text or "").split()) or 1
        if behaviour == "usage-static":
            prompt_tokens = 20
        if behaviour == "usage-huge":
            prompt_tokens = 2**62
        if behaviour == "usage-over-max":
            completion += 5
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion}
        usage["total_tokens"] = prompt_tokens + completion + (7 if behaviour == "usage-bad-total" else 0)
        model = str(body.get("model", ""))
        if body.get("stream"):
            if behaviour == "stream-usage-differs":
                usage = {k: v + 3 for k, v in usage.items()}
            include = bool((body.get("stream_options") or {}).get("include_usage"))
            return self._stream(text or "", finish, usage, include, model)
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if tool_calls:
            message["tool_calls"] = tool_calls
        self._json(
            200,
            {
                "id": "chatcmpl-cap",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": usage,
            },
        )


class CapabilityBedrockHandler(BedrockHandler):
    """Converse tool use: `toolConfig` in, `toolUse` blocks out; a forced tool carries the structured answer."""

    def respond(self, raw: bytes, body: dict[str, Any]) -> None:
        if "toolConfig" not in body:
            return super().respond(raw, body)
        parts = self.path.split("/")
        problem = verify_sigv4("POST", self.headers.get("Host", ""), self.path, dict(self.headers.items()), raw)
        if problem is not None or len(parts) != 4:
            return self._error(403, "InvalidSignatureException", f"bad request: {problem}")
        mode, operation = unquote(parts[2]).split(":")[0], parts[3]
        config = body["toolConfig"]
        messages = body.get("messages", [])
        blocks = messages[-1]["content"] if messages else []
        prompt = "".join(b.get("text", "") for b in blocks)
        forced = (config.get("toolChoice") or {}).get("tool", {}).get("name")
        tokens = count_tokens(["".join(b.get("text", "") for b in m["content"]) for m in messages])
        if forced is not None:
            spec = next(t["toolSpec"] for t in config["tools"] if t["toolSpec"]["name"] == forced)
            value = spec["inputSchema"]["json"].get("examples", [PERSON])[0]
            content: list[dict[str, Any]] = [{"toolUse": {"toolUseId": "tooluse_s1", "name": forced, "input": value}}]
            stop = "tool_use"
        elif any("toolResult" in b for b in blocks):
            result = next(b["toolResult"] for b in blocks if "toolResult" in b)
            content, stop = [{"text": final_answer(mode, result["content"][0]["text"])}], "end_turn"
        else:
            name, arguments = tool_arguments(mode, prompt)
            use = {"toolUseId": "tooluse_1", "name": name, "input": json.loads(arguments)}
            content, stop = [{"text": "Let me look that up."}, {"toolUse": use}], "tool_use"
        usage = {"inputTokens": tokens, "outputTokens": 5, "totalTokens": tokens + 5}
        if operation == "converse":
            message = {"role": "assistant", "content": content}
            return self._json(200, {"output": {"message": message}, "stopReason": stop, "usage": usage})
        self._stream_blocks(content, stop, usage)

    def _stream_blocks(self, content: list[dict[str, Any]], stop: str, usage: dict[str, int]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.amazon.eventstream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._chunk(bedrock_event("messageStart", {"role": "assistant"}))
        for index, block in enumerate(content):
            if "toolUse" in block:
                use = block["toolUse"]
                start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
                self._chunk(bedrock_event("contentBlockStart", {"contentBlockIndex": index, "start": start}))
                text = json.dumps(use["input"])
                for piece in (text[: len(text) // 2], text[len(text) // 2 :]):  # input arrives in pieces
                    delta = {"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}}
                    self._chunk(bedrock_event("contentBlockDelta", delta))
            else:
                delta = {"contentBlockIndex": index, "delta": {"text": block["text"]}}
                self._chunk(bedrock_event("contentBlockDelta", delta))
            self._chunk(bedrock_event("contentBlockStop", {"contentBlockIndex": index}))
        self._chunk(bedrock_event("messageStop", {"stopReason": stop}))
        self._chunk(bedrock_event("metadata", {"usage": usage, "metrics": {"latencyMs": 30}}))
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
