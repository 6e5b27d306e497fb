"""Structured logging for every certq process: one line per event, JSON or text, optional log files.

Fields travel as stdlib `extra=`: `log.info("job completed", extra={"job_id": j, "attempt": 2})`.
Everything on a record that the stdlib did not put there is printed as a field.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from certq.settings import SettingsError

LogFormat = Literal["json", "text"]

_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_HANDLER_MARK = "_certq_handler"


def _timestamp(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The event's own fields (the `extra=` keys), in the order they were given."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """`{"timestamp", "level", "logger", "message", ...fields, "exception"?}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(record_fields(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """`<time> LEVEL logger message key=value ...` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={_text_value(v)}" for k, v in record_fields(record).items())
        line = f"{_timestamp(record.created)} {record.levelname:<7} {record.name} {record.getMessage()}"
        if fields:
            line = f"{line} {fields}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def _text_value(value: object) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return orjson.dumps(text).decode() if (" " in text or not text) else text


def choose_format(fmt: LogFormat | None, stream: IO[str]) -> LogFormat:
    """JSON unless asked for text or writing to a terminal (LOG_FORMAT unset)."""
    if fmt is not None:
        return fmt
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def configure_logging(
    level: str = "INFO",
    fmt: LogFormat | None = None,
    log_dir: str | Path | None = None,
    *,
    stream: IO[str] | None = None,
) -> None:
    """Set up the root logger once per process (calling again replaces certq's handlers).

    With `log_dir`, also writes JSON lines to `combined.log` (every event at `level`) and `error.log`
    (ERROR and above) there, as the original worker's Winston logger did. Raises SettingsError naming
    LOG_DIR when the files cannot be created there (not a directory, no permission, /proc...).
    """
    out = stream if stream is not None else sys.stderr
    files = [] if log_dir is None else _log_files(Path(log_dir))
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(handler)
        handler.close()
    console = logging.StreamHandler(out)
    console.setFormatter(JsonFormatter() if choose_format(fmt, out) == "json" else TextFormatter())
    handlers: list[logging.Handler] = [console, *files]
    for handler in handlers:
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries' chatter stays out of an operator's INFO stream.
    for noisy in ("uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def _log_files(directory: Path) -> list[logging.Handler]:
    """combined.log and error.log in `directory`, created if missing."""
    opened: list[logging.Handler] = []
    if directory.exists() and not directory.is_dir():
        raise SettingsError("LOG_DIR", f"{str(directory)!r} is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        opened.append(logging.FileHandler(directory / "combined.log", encoding="utf-8"))
        opened.append(logging.FileHandler(directory / "error.log", encoding="utf-8"))
    except OSError as exc:
        for handler in opened:
            handler.close()
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise SettingsError("LOG_DIR", f"cannot write log files in {str(directory)!r}: {reason}") from None
    opened[1].setLevel(logging.ERROR)
    for handler in opened:
        handler.setFormatter(JsonFormatter())
    return opened
