"""A tiny OpenAI-compatible model server for the chaos suite: answers every probe correctly, or hangs.

`python -m certq.chaos.model_stub --port P [--hang-file F] [--delay S]` serves on 127.0.0.1. While the
file F exists every request hangs (no byte is sent) until F is removed, then the connection drops:
an endpoint that stopped answering. Requests are counted in `GET /stats`.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HANG_LIMIT_S = 120.0


def answer(messages: list[dict[str, Any]], system: str, max_tokens: int) -> str:
    """A correct answer to each of certq's probe prompts."""
    last = str(messages[-1].get("content", "")) if messages else ""
    counting = re.search(r"Count from 1 to (\d+)", last)
    if counting:
        text = " ".join(str(i) for i in range(1, int(counting.group(1)) + 1))
    elif "pong" in last:
        text = "pong"
    elif "17 + 25" in last:
        text = "42"
    elif "capital of France" in last:
        text = "Paris."
    elif "exactly OK" in last:
        text = "OK"
    elif "JSON" in last:
        text = '{"name": "Alice", "age": 30}'
    elif "code word" in last and "ZEBRA" in system:
        text = "ZEBRA"
    else:
        text = "Hello."
    return " ".join(text.split(" ")[:max_tokens])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hang_file: Path | None = None
    delay_s: float = 0.0
    counts: dict[str, int] = {"requests": 0, "hung": 0}
    lock = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:  # the stdlib's signature
        pass

    def _json(self, status: int, obj: object) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/stats":
            with self.lock:
                return self._json(200, dict(self.counts))
        return self._json(200, {"object": "list", "data": [{"id": "stub-model", "object": "model"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with self.lock:
            self.counts["requests"] += 1
        if self.hang_file is not None and self.hang_file.exists():
            with self.lock:
                self.counts["hung"] += 1
            deadline = time.monotonic() + HANG_LIMIT_S
            while self.hang_file.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            self.close_connection = True
            return
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.path != "/v1/chat/completions":
            return self._json(404, {"detail": "Not Found"})
        messages = body.get("messages", [])
        system = " ".join(str(m.get("content", "")) for m in messages if m.get("role") == "system")
        turns = [m for m in messages if m.get("role") != "system"]
        text = answer(turns, system, int(body.get("max_tokens", 256)))
        usage = {"prompt_tokens": 20, "completion_tokens": len(text.split()) or 1}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if body.get("stream"):
            return self._stream(text, usage, bool((body.get("stream_options") or {}).get("include_usage")))
        self._json(
            200,
            {
                "id": "chatcmpl-stub",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": "stub-model",
                "usage": usage,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            },
        )

    def _stream(self, text: str, usage: dict[str, int], include_usage: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        base = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "model": "stub-model"}
        events: list[object] = [
            base | {"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
        ]
        for i, word in enumerate(text.split(" ")):
            events.append(
                base
                | {
                    "choices": [
                        {"index": 0, "delta": {"content": word if i == 0 else " " + word}, "finish_reason": None}
                    ]
                }
            )
        events.append(base | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if include_usage:
            events.append(base | {"choices": [], "usage": usage})
        for event in events:
            self._chunk(b"data: " + json.dumps(event).encode() + b"\n\n")
        self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m certq.chaos.model_stub")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--hang-file", type=Path)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args(argv)
    handler = type(
        "Handler",
        (_Handler,),
        {"hang_file": args.hang_file, "delay_s": args.delay, "counts": {"requests": 0, "hung": 0}},
    )
    server = _Server(("127.0.0.1", args.port), handler)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
