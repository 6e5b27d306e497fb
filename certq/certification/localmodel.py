"""A real local model server for tests and the demo: llama-cpp-python serving a tiny generated GGUF.

Importable without llama_cpp installed; `start_llama_server` needs the `llm` extra in `python`'s environment.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from certq.certification.tinymodel import Mode, write_model


class LocalServerError(RuntimeError):
    """The model server did not start (its log file is named in the message)."""


def llama_cpp_available(python: str = sys.executable) -> bool:
    probe = subprocess.run([python, "-c", "import llama_cpp.server"], capture_output=True, timeout=60)
    return probe.returncode == 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str, api_key: str | None) -> bool:
    request = urllib.request.Request(url)
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_llama_server(
    model_path: str | Path,
    *,
    alias: str | None = None,
    api_key: str | None = None,
    port: int | None = None,
    n_ctx: int = 2048,
    python: str = sys.executable,
    ready_timeout_s: float = 60.0,
) -> tuple[str, subprocess.Popen[bytes]]:
    """Start `python -m llama_cpp.server` on 127.0.0.1 and wait until `GET /v1/models` answers.

    Returns `(base_url ending in /v1, process)`; stop it with `stop_llama_server(process)`. The server's
    output goes to `<model>.log` next to the model file.
    """
    model = Path(model_path)
    port = port or _free_port()
    log_path = model.with_suffix(".log")
    command = [
        python,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        alias or model.stem,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        # Without this, a second concurrent stream silently cuts the first one short.
        "--interrupt_requests",
        "False",
        "--verbose",
        "False",
    ]
    if api_key:
        command += ["--api_key", api_key]
    return _serve(command, port, log_path, api_key, ready_timeout_s, "llama_cpp.server")


def start_upstream_llama_server(
    binary: str | Path,
    model_path: str | Path,
    *,
    alias: str | None = None,
    api_key: str | None = None,
    port: int | None = None,
    n_ctx: int = 2048,
    ready_timeout_s: float = 60.0,
    jinja: bool = False,
) -> tuple[str, subprocess.Popen[bytes]]:
    """Start llama.cpp's own `llama-server` (the one self-hosted users run) like `start_llama_server`.

    `jinja`: render the chat template with jinja, which is how llama-server offers `tools` (its tool-call
    formats parse the model's output into `tool_calls`)."""
    model = Path(model_path)
    port = port or _free_port()
    command = [
        str(binary),
        "--model",
        str(model),
        "--alias",
        alias or model.stem,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--ctx-size",
        str(n_ctx),
        "--parallel",
        "4",
        "--threads",
        "1",
        "--no-webui",
    ]
    if api_key:
        command += ["--api-key", api_key]
    if jinja:
        command.append("--jinja")
    return _serve(command, port, model.with_suffix(".upstream.log"), api_key, ready_timeout_s, "llama-server")


def _serve(
    command: list[str], port: int, log_path: Path, api_key: str | None, ready_timeout_s: float, name: str
) -> tuple[str, subprocess.Popen[bytes]]:
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalServerError(f"{name} exited with {process.returncode}; see {log_path}")
        if _answers(f"{base_url}/models", api_key):
            return base_url, process
        time.sleep(0.1)
    stop_llama_server(process)
    raise LocalServerError(f"{name} did not answer within {ready_timeout_s:g}s; see {log_path}")


def stop_llama_server(process: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    """Terminate the server by its own pid; kill it if it does not exit in time."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout_s)


def start_tiny_model_server(
    directory: str | Path, mode: Mode = "scripted", **kwargs: object
) -> tuple[str, subprocess.Popen[bytes], Path]:
    """Write the tiny `mode` model into `directory` and serve it: `(base_url, process, model_path)`."""
    path = write_model(Path(directory) / f"tiny-{mode}.gguf", mode)
    url, process = start_llama_server(path, alias=f"tiny-{mode}", **kwargs)  # type: ignore[arg-type]
    return url, process, path
