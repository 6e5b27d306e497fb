"""One structured line per event: JSON off a terminal, text on one, files with LOG_DIR."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from certq.logs import configure_logging
from certq.settings import SettingsError


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers, root.level = handlers, level


def test_json_lines_carry_the_event_fields_when_not_on_a_terminal() -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    logging.getLogger("certq.worker").info("job completed", extra={"job_id": "j1", "attempt": 2, "duration_ms": 15})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["message"] == "job completed" and event["level"] == "info" and event["logger"] == "certq.worker"
    assert (event["job_id"], event["attempt"], event["duration_ms"]) == ("j1", 2, 15)
    assert event["timestamp"].endswith("Z")


def test_text_on_a_terminal_and_json_when_forced() -> None:
    tty = Tty()
    configure_logging("INFO", stream=tty)
    logging.getLogger("certq").info("worker started", extra={"concurrency": 3})
    assert "INFO" in tty.getvalue() and "worker started concurrency=3" in tty.getvalue()
    forced = Tty()
    configure_logging("INFO", "json", stream=forced)
    logging.getLogger("certq").info("worker started")
    assert json.loads(forced.getvalue())["message"] == "worker started"


def test_level_filters_events_below_it() -> None:
    stream = io.StringIO()
    configure_logging("warning", stream=stream)
    logging.getLogger("certq").info("quiet")
    logging.getLogger("certq").warning("loud")
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == ["loud"]


def test_exceptions_stay_on_one_json_line() -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("certq").exception("job crashed", extra={"job_id": "j"})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and "ValueError: boom" in json.loads(lines[0])["exception"]


def test_log_dir_writes_combined_and_error_files(tmp_path: Path) -> None:
    configure_logging("INFO", "text", tmp_path / "logs", stream=io.StringIO())
    log = logging.getLogger("certq.worker")
    log.info("job completed", extra={"job_id": "a"})
    log.error("job failed for good", extra={"job_id": "b"})
    for handler in logging.getLogger().handlers:
        handler.flush()
    combined = [json.loads(line) for line in (tmp_path / "logs" / "combined.log").read_text().splitlines()]
    errors = [json.loads(line) for line in (tmp_path / "logs" / "error.log").read_text().splitlines()]
    assert [e["job_id"] for e in combined] == ["a", "b"]
    assert [e["job_id"] for e in errors] == ["b"]


def test_configuring_twice_does_not_duplicate_lines() -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream=io.StringIO())
    configure_logging("INFO", stream=stream)
    logging.getLogger("certq").info("once")
    assert len(stream.getvalue().splitlines()) == 1


@pytest.mark.parametrize("where", ["a file", "under a file", "/proc/nonexistent"])
def test_an_unusable_log_dir_is_a_settings_error_naming_log_dir(tmp_path: Path, where: str) -> None:
    a_file = tmp_path / "plain"
    a_file.write_text("x")
    log_dir = {"a file": a_file, "under a file": a_file / "logs", "/proc/nonexistent": Path(where)}[where]
    before = list(logging.getLogger().handlers)
    with pytest.raises(SettingsError) as caught:
        configure_logging("INFO", "text", log_dir, stream=io.StringIO())
    assert caught.value.variable == "LOG_DIR" and str(log_dir) in caught.value.message
    assert logging.getLogger().handlers == before
