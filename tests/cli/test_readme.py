"""The README's commands work as pasted into a new terminal in the checkout: no activated virtualenv, no
`certq` on PATH, a `python` without certq's dependencies."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from certq.cli import build_parser
from tests.test_bootstrap import ROOT, fresh_shell_env

README = (ROOT / "README.md").read_text()
# Where the README describes deployments (the image, Kubernetes, systemd), where `certq` is on PATH.
DEPLOYMENT = README[README.index("## Running it for real") : README.index("## Admin CLI")]


def _commands(text: str) -> list[str]:
    """What the README gives to paste: the lines of its bash blocks and the commands its tables list."""
    blocks = re.findall(r"```bash\n(.*?)```", text, re.DOTALL)
    cells = re.findall(r"^\| (`[^|]+`)(?: \||, )", text, re.MULTILINE)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()] + [
        span for cell in cells for span in re.findall(r"`([^`]+)`", cell)
    ]


def test_every_admin_command_the_readme_shows_runs_from_a_fresh_shell_in_the_checkout(tmp_path: Path) -> None:
    spans = [*_commands(README), *re.findall(r"`(\.venv/bin/certq [^`<]+)`", README)]
    shown = sorted({command.split()[1] for command in spans if command.startswith(".venv/bin/certq ")})
    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert commands is not None
    assert {"doctor", "stats", "jobs", "job", "events", "enqueue", "certify", "demo"} <= set(shown)
    assert set(shown) <= set(commands)
    script = "\n".join(f".venv/bin/certq {name} --help > /dev/null || {{ echo {name}; exit 1; }}" for name in shown)
    done = subprocess.run(
        ["bash", "-c", script], env=fresh_shell_env(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_readme_never_runs_certq_through_a_bare_python_or_path_outside_deployments() -> None:
    outside = README.replace(DEPLOYMENT, "")
    bare = [
        command
        for command in _commands(outside)
        if re.match(r"(python3? -m certq(?!\.bootstrap)|certq(-api|-worker)? )", command)
    ]
    assert bare == []
    assert ". .venv/bin/activate" in README
