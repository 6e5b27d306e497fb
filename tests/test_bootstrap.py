"""The README's Quickstart command as a person runs it: `python3 -m certq.bootstrap demo` in a terminal."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from certq import bootstrap
from certq.embedded import port_answers

ROOT = Path(__file__).resolve().parents[1]
# The python3 this checkout's virtualenv was made from: what `python3` is in the person's shell.
PYTHON3 = Path(sys.base_prefix) / "bin" / "python3"


def fresh_shell_env(tmp_path: Path) -> dict[str, str]:
    """What a new terminal has: no virtualenv on PATH, no certq or provider variables, no AWS credentials."""
    venv_bin = Path(sys.executable).parent
    path = os.pathsep.join(
        p for p in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep) if p and Path(p) != venv_bin
    )
    return {
        "PATH": path,
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "LANG": "C.UTF-8",
        "TERM": "xterm",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


class Terminal:
    """A command running as the foreground job of its own pseudo-terminal, as in a person's terminal window:
    typing Ctrl-C there makes the terminal send SIGINT to the command's whole process group."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.master, slave = os.openpty()

        def take_the_terminal() -> None:  # in the child, after setsid(): the pty becomes its controlling tty
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.process = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=take_the_terminal,
        )
        os.close(slave)
        self.output = ""
        self.closed = False

    def read_until(self, done: Callable[[str], bool], timeout_s: float) -> bool:
        """Collect the terminal's output until `done(output)`; False if that takes more than `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if done(self.output):
                return True
            if self.closed or not select.select([self.master], [], [], 0.2)[0]:
                time.sleep(0.1 if self.closed else 0)
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: nothing holds the terminal any more
                chunk = b""
            self.closed = not chunk
            self.output += chunk.decode(errors="replace").replace("\r\n", "\n")
        return done(self.output)

    def exited(self, timeout_s: float) -> bool:
        return self.read_until(lambda _: self.process.poll() is not None and self.closed, timeout_s)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.master)


def descendants(root: int) -> set[int]:
    """Every live process whose parent chain leads to `root`."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def postmasters(workdir: Path) -> set[int]:
    """PostgreSQL servers running from the demo's folder (pg_ctl detaches them: not descendants)."""
    pids: set[int] = set()
    for pidfile in workdir.glob("**/postmaster.pid"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            pids.add(int(pidfile.read_text().split()[0]))
    return pids


class Terminals:
    """Commands started in their own terminals, and every process seen under them."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.started: list[Terminal] = []
        self.seen: set[int] = set()
        self.folders: list[Path] = []

    def start(self, *argv: str) -> Terminal:
        self.started.append(Terminal(list(argv), self.env, ROOT))
        return self.started[-1]

    def watch(self) -> set[int]:
        for term in self.started:
            self.seen.update(descendants(term.process.pid))
        return set(self.seen)


@pytest.fixture
def terminals(tmp_path: Path) -> Iterator[Terminals]:
    """Whatever outlives the test is killed, so that a failing run leaves nothing behind either."""
    owned = Terminals(fresh_shell_env(tmp_path))
    yield owned
    for term in owned.started:
        for pid in [term.process.pid, *owned.watch()]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            term.process.wait(10)
        term.close()
    for folder in owned.folders:
        shutil.rmtree(folder, ignore_errors=True)


def _started(output: str) -> tuple[Path, list[int]]:
    workdir = re.search(r"working files \(.*?\) in (\S+):", output)
    assert workdir, output
    ports = sorted({int(port) for port in re.findall(r"127\.0\.0\.1:(\d+)", output)})
    return Path(workdir.group(1)), ports


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ctrl_c_on_the_quickstart_demo_stops_everything_it_started_and_removes_its_folder(terminals: Terminals) -> None:
    if not bootstrap.venv_ready(bootstrap.EXTRAS["demo"]):
        pytest.skip("the virtualenv is not set up for the demo: run `python3 -m certq.bootstrap demo` once")
    term = terminals.start(str(PYTHON3), "-m", "certq.bootstrap", "demo", "--timeout", "150")
    ready = term.read_until(lambda out: "press Ctrl-C to stop" in out, 200)
    assert ready, term.output
    workdir, ports = _started(term.output)
    assert len(ports) >= 4, term.output  # Redis, model server, API, worker
    terminals.folders.append(workdir)
    terminals.seen |= postmasters(workdir)
    ours = terminals.watch()
    assert ours and postmasters(workdir), term.output

    term.type(b"\x03")
    assert term.exited(90), term.output
    out = term.output
    assert term.process.returncode == 130, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
    assert f"stopped everything it started; removed {workdir}" in out
    assert not workdir.exists()
    assert sorted(pid for pid in ours if alive(pid)) == []
    assert [port for port in ports if port_answers("127.0.0.1", port)] == []


def test_ctrl_c_while_setting_up_exits_130_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(extras: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(bootstrap, "ensure_venv", interrupted)
    try:
        code = bootstrap.main(["demo"])
    except KeyboardInterrupt:
        pytest.fail("the interrupt escaped bootstrap.main: a traceback")
    assert code == 130
    assert "interrupted while setting up" in capsys.readouterr().out


def test_the_test_install_readies_the_demo_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").touch()
    root = tmp_path / "checkout"
    root.mkdir()
    pyproject = root / "pyproject.toml"
    pyproject.write_text("[project]\nname = 'x'\n\n[tool.ruff]\nline-length = 120\n")
    monkeypatch.setattr(bootstrap, "VENV", tmp_path)
    monkeypatch.setattr(bootstrap, "ROOT", root)
    (tmp_path / ".certq-installed-embedded-llm-test-dev").write_text(bootstrap._install_digest())
    assert bootstrap.venv_ready(bootstrap.EXTRAS["demo"]) and bootstrap.venv_ready(bootstrap.EXTRAS["test"])
    pyproject.write_text("[project]\nname = 'x'\n\n[tool.ruff]\nline-length = 100\n")  # a linter's setting
    assert bootstrap.venv_ready(bootstrap.EXTRAS["demo"])
    pyproject.write_text("[project]\nname = 'x'\ndependencies = ['y']\n")  # what gets installed: install again
    assert not bootstrap.venv_ready(bootstrap.EXTRAS["demo"])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_an_editable_install_prints_no_setuptools_warning(tmp_path: Path) -> None:
    """What the bootstrap runs (`pip install -e .`), on a copy of the checkout, into a throwaway virtualenv."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, checkout / name)
    shutil.copytree(ROOT / "certq", checkout / "certq", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True, timeout=120)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(target / "bin" / "python"),
            "install",
            "--disable-pip-version-check",
            "-q",
            "--no-deps",
            "-e",
            str(checkout),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    printed = done.stdout + done.stderr
    assert "Warning" not in printed and "*****" not in printed, printed
    imported = subprocess.run(
        [str(target / "bin" / "python"), "-c", "import certq; print(certq.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert imported.stdout.strip() == str(checkout / "certq" / "__init__.py"), imported.stderr


def test_the_bootstrap_of_an_installed_wheel_says_it_needs_a_checkout_and_exits_2(tmp_path: Path) -> None:
    # What a wheel installs: the package without the repository around it.
    site = tmp_path / "site-packages"
    (site / "certq").mkdir(parents=True)
    (site / "certq" / "__init__.py").write_text("")
    shutil.copy(Path(bootstrap.__file__), site / "certq" / "bootstrap.py")
    env = {**fresh_shell_env(tmp_path), "PYTHONPATH": str(site)}
    done = subprocess.run(
        [str(PYTHON3), "-m", "certq.bootstrap", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "sets up a source checkout" in done.stderr and "Traceback" not in done.stderr
    assert not (site / ".venv").exists() and not (tmp_path / ".venv").exists()
