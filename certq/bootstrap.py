"""Set up a private virtualenv and run the demo or the test suite: the README's two Quickstart commands.

Standard library only, so it runs on a fresh machine with nothing but Python 3.11+:
`python3 -m certq.bootstrap demo` and `python3 -m certq.bootstrap test`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
EXTRAS = {"demo": "embedded,llm", "test": "embedded,llm,test,dev"}


def _python() -> Path:
    return VENV / "bin" / "python"


def _say(message: str) -> None:
    print(f"[certq] {message}", flush=True)


def _stamp(extras: str) -> Path:
    return VENV / f".certq-installed-{extras.replace(',', '-')}"


def venv_ready(extras: str) -> bool:
    """Whether `.venv` has certq installed, from this pyproject.toml, with at least these extras
    (the test set includes the demo's, so `bootstrap test` once also readies `bootstrap demo`)."""
    if not _python().exists():
        return False
    digest = _install_digest()
    wanted = set(extras.split(","))
    for stamp in VENV.glob(".certq-installed-*"):
        if wanted <= set(stamp.name.removeprefix(".certq-installed-").split("-")) and stamp.read_text() == digest:
            return True
    return False


def ensure_venv(extras: str) -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this module must run on an old python to say so
        sys.exit("certq needs Python 3.11 or newer")
    if not _python().exists():
        _say(f"creating {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    if venv_ready(extras):
        return
    _say(f"installing certq[{extras}] (the first time builds llama-cpp-python: a few minutes)")
    pip = [str(_python()), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[{extras}]"], check=True)
    _stamp(extras).write_text(_install_digest())


def _install_digest() -> str:
    """What an install depends on in pyproject.toml (the build, the project, setuptools' options); a change to
    the linters' or pytest's sections does not call for a new install."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    relevant = {
        "build-system": config.get("build-system"),
        "project": config.get("project"),
        "setuptools": config.get("tool", {}).get("setuptools"),
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def ensure_chromium() -> None:
    """The dashboard's browser tests drive Debian's Chromium; install it where we may."""
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        _say("chromium not found and cannot be installed here: the browser tests will fail")
        return
    _say("installing chromium (apt)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=False, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True, env=env, stdout=subprocess.DEVNULL)


def ensure_promtool() -> None:
    """The alert-rule tests run Prometheus's promtool: taken from Debian's `prometheus` package without
    installing it (installing would start a Prometheus server), into the virtualenv's bin/."""
    target = VENV / "bin" / "promtool"
    if shutil.which("promtool") or target.exists():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        _say("promtool not found: the alert-rule tests will be skipped")
        return
    import tempfile

    def quiet(command: list[str], cwd: str) -> int:
        return subprocess.run(
            command, cwd=cwd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300
        ).returncode

    with tempfile.TemporaryDirectory(prefix="certq-promtool-") as tmp:
        download = ["apt-get", "download", "-q", "prometheus"]
        if quiet(download, tmp) != 0:
            quiet(["apt-get", "update", "-q"], tmp)
            if quiet(download, tmp) != 0:
                _say("could not download Debian's prometheus package: the alert-rule tests will be skipped")
                return
        package = next(Path(tmp).glob("prometheus_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(package), str(Path(tmp) / "x")], check=True, timeout=300)
        shutil.copytree(Path(tmp) / "x" / "usr" / "bin", target.parent, dirs_exist_ok=True)  # promtool, prometheus
    _say(f"promtool installed at {target}")


DOCKER_TEST_PACKAGES = {"dockerd": "docker.io", "debootstrap": "debootstrap"}
"""The live compose test's engine and its stand-in base images' root filesystem (tests/deploy/engine.py)."""


def ensure_docker_engine() -> None:
    """The live compose test starts Debian's dockerd itself (private data root and socket): install the packages
    without starting a daemon, where we may."""
    missing = [package for command, package in DOCKER_TEST_PACKAGES.items() if not shutil.which(command)]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        _say(f"{' and '.join(missing)} not found and cannot be installed here: the live compose test will fail")
        return
    _say(f"installing {' '.join(missing)} (apt)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=False, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, env=env, stdout=subprocess.DEVNULL)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in EXTRAS:
        print("usage: python3 -m certq.bootstrap {demo|test} [args...]", file=sys.stderr)
        return 2
    what, rest = argv[0], argv[1:]
    if not (ROOT / "pyproject.toml").is_file():
        # An installed wheel carries this module but no checkout to set up.
        print(
            f"certq.bootstrap sets up a source checkout, and {ROOT} is not one (no pyproject.toml).\n"
            "certq is already installed here: run `certq demo` or `python -m certq.api` directly, or run the "
            "bootstrap from a clone of the repository.",
            file=sys.stderr,
        )
        return 2
    try:
        ensure_venv(EXTRAS[what])
        if what == "test":
            ensure_chromium()
            ensure_promtool()
            ensure_docker_engine()
    except KeyboardInterrupt:
        print(file=sys.stderr)
        _say("interrupted while setting up; run the same command again to finish")
        return 130
    except subprocess.CalledProcessError as exc:
        _say(f"setting up failed: {' '.join(map(str, exc.cmd))} exited with code {exc.returncode}")
        return 1
    os.chdir(ROOT)
    command = ["-m", "certq", "demo", *rest] if what == "demo" else ["-m", "pytest", *rest]
    _say(f"running .venv/bin/python {' '.join(command)}")
    # Become the demo (or pytest) rather than wait for it: a terminal's Ctrl-C then reaches only the
    # process that owns the cleanup. A waiting parent (subprocess.call) would take the SIGINT too and
    # SIGKILL its child 0.25 s later, in the middle of stopping the servers it started.
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(_python(), [str(_python()), *command])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
