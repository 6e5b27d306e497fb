"""The docs cover what the code has: every Settings variable, every CLI exit code, every command."""

from __future__ import annotations

import re

from certq.cli import build_parser
from certq.cli.common import EXIT_CODES
from tests.deploy.helpers import ROOT, settings_aliases

DOCS = ROOT / "docs"


def test_configuration_reference_documents_every_settings_variable() -> None:
    text = (DOCS / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", text, re.MULTILINE))
    assert settings_aliases() - documented == set(), "add these to docs/configuration.md"
    assert documented - settings_aliases() == set(), "docs/configuration.md documents variables certq does not read"


def test_runbook_lists_the_exit_codes_the_cli_uses() -> None:
    text = (DOCS / "operations.md").read_text()
    documented = {int(code): meaning for code, meaning in re.findall(r"^\| `(\d+)` \| (.+) \|$", text, re.MULTILINE)}
    assert documented == EXIT_CODES


def test_runbook_mentions_every_cli_command() -> None:
    text = (DOCS / "operations.md").read_text()
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert commands is not None
    missing = [name for name in commands if f"certq {name}" not in text]
    assert missing == []


def test_readme_keeps_the_two_quickstart_commands_and_links_the_docs() -> None:
    text = (ROOT / "README.md").read_text()
    assert "python3 -m certq.bootstrap demo" in text and "python3 -m certq.bootstrap test" in text
    for doc in ("architecture.md", "configuration.md", "operations.md", "api.md"):
        assert f"docs/{doc}" in text
        assert (DOCS / doc).exists()
