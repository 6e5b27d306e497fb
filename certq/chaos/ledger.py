"""The ledger every chaos run ends with: what was accepted, finished, lost, finished twice, stuck."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Ledger:
    """Counts of one run. `lost`: accepted but gone without a result; `stuck`: still pending at the deadline;
    `finished_twice`: more than one final result written; `ran_twice`: a handler started more than once
    (allowed: at-least-once delivery); `recover_s`: from the fault striking to the first job finished once it is over (a
    failover: kill -> promotion -> next job done)."""

    scenario: str
    accepted: int = 0
    finished: int = 0
    lost: int = 0
    finished_twice: int = 0
    stuck: int = 0
    ran_twice: int = 0
    recover_s: float | None = None
    elapsed_s: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.finished_twice == 0 and self.stuck == 0 and self.finished == self.accepted

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok}

    def row(self) -> str:
        """One Markdown table row (see `HEADER`)."""
        recover = "-" if self.recover_s is None else f"{self.recover_s:.1f} s"
        return (
            f"| {self.scenario} | {self.accepted} | {self.finished} | {self.lost} | {self.finished_twice} | "
            f"{self.stuck} | {self.ran_twice} | {recover} | {self.elapsed_s:.1f} s |"
        )


HEADER = (
    "| scenario | accepted | finished | lost | finished twice | stuck | ran twice | time to recover "
    "| run time |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def count_twice(counter: Counter[str]) -> int:
    return sum(1 for count in counter.values() if count > 1)


def render(ledgers: list[Ledger]) -> str:
    return "\n".join([HEADER, *(ledger.row() for ledger in ledgers)])
