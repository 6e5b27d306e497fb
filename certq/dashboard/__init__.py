"""certq's operator console at BULL_BOARD_PATH: queue, workers, certifications and an audit log."""

from __future__ import annotations

from certq.dashboard.app import create_board
from certq.dashboard.ports import (
    BoardDeps,
    BoardQueue,
    Certify,
    CertifyOrder,
    ChangeSchedule,
    ScheduleChange,
    StaticDeps,
)

__all__ = [
    "BoardDeps",
    "BoardQueue",
    "Certify",
    "CertifyOrder",
    "ChangeSchedule",
    "ScheduleChange",
    "StaticDeps",
    "create_board",
]
