"""Durations as operators write them: `90s`, `15m`, `12h`, `7d`, `2w`, `500ms`; a bare number is seconds."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000, None: 1_000}


def parse_duration_ms(text: str) -> int:
    """`"7d"` -> 604800000; raises ValueError (naming the examples) on anything else."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration (examples: 90s, 15m, 12h, 7d, 2w)")
    return int(float(match.group(1)) * _DURATION_MS[match.group(2)])
