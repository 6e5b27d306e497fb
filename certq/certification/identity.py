"""Is the endpoint serving the model we were asked to certify? The rule that compares the names.

A certificate for the wrong model is the worst answer certq can give, and many servers (llama.cpp's
llama-server, a single-model vLLM, gateways) answer with whatever they serve whatever `model` says. So
every answer's `model` field is compared with what was asked:

- names compare case-insensitively, on the last path segment (`Qwen/Qwen2.5-7B-Instruct` matches
  `qwen2.5-7b-instruct`), without a trailing `.gguf` or an Ollama `:latest`;
- a dated snapshot of the name matches it (`gpt-4o` served as `gpt-4o-2024-08-06`, `-20240806`, `-0613`),
  any other addition does not (`gpt-4o` served as `gpt-4o-mini` is a mismatch);
- where a deployment legitimately reports another name, the model's registration says which
  (`servedModel`), and that name is then the one answers must report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from certq.certification.limits import quote_endpoint

_SNAPSHOT = r"[-@](\d{4}-\d{2}-\d{2}|\d{8}|\d{4})"

Finding = Literal["matched", "mismatch", "unreported", "by-path"]


MAX_NAMES_SHOWN = 5


def _as_is(text: str, _limit: int) -> str:
    return text


def normalize(name: str) -> str:
    name = name.strip().lower().rstrip("/").rsplit("/", 1)[-1]
    return name.removesuffix(":latest").removesuffix(".gguf")


def names_match(expected: str, reported: str) -> bool:
    want, got = normalize(expected), normalize(reported)
    return bool(want) and (got == want or re.fullmatch(re.escape(want) + _SNAPSHOT, got) is not None)


@dataclass(frozen=True)
class Identity:
    finding: Finding
    expected: str
    reported: tuple[str, ...]

    @property
    def message(self) -> str:
        reported = ", ".join(repr(name) for name in self.reported)
        if self.finding == "mismatch":
            return (
                f"the endpoint serves {reported}, not {self.expected!r}: a certificate would be for the wrong "
                f"model (if that name is right for this deployment, register it as servedModel)"
            )
        if self.finding == "unreported":
            return f"the endpoint reported no model name, so it is not confirmed that it serves {self.expected!r}"
        return ""

    def to_json(self) -> dict[str, object]:
        return {"finding": self.finding, "expected": self.expected, "reported": list(self.reported)}


def judge(provider: str, asked: str, served_model: str | None, reported: Iterable[str]) -> Identity:
    """The identity finding of a run from every model name its answers reported."""
    expected = served_model or asked
    names = tuple(sorted({quote_endpoint(name, _as_is, 120) for name in reported}))[:MAX_NAMES_SHOWN]
    if provider == "bedrock":
        # The model id is in the request path and Bedrock refuses one it does not serve (MODEL_NOT_FOUND).
        return Identity("by-path", expected, names)
    if not names:
        return Identity("unreported", expected, names)
    if all(names_match(expected, name) for name in names):
        return Identity("matched", expected, names)
    return Identity("mismatch", expected, names)
