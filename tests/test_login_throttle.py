"""LoginThrottle: failures per client in a window, bounded memory."""

from __future__ import annotations

from certq.login_throttle import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_client_is_held_off_after_the_limit_until_the_window_passes() -> None:
    clock = Clock()
    throttle = LoginThrottle(limit=3, window_s=60, clock=clock)
    for _ in range(3):
        assert throttle.retry_after("10.0.0.1") == 0
        throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == 60
    assert throttle.retry_after("10.0.0.2") == 0  # per client
    clock.now += 59
    assert throttle.retry_after("10.0.0.1") == 1
    clock.now += 1
    assert throttle.retry_after("10.0.0.1") == 0


def test_the_clients_tracked_are_bounded() -> None:
    throttle = LoginThrottle(limit=2, window_s=60, max_clients=100, clock=Clock())
    for n in range(10_000):
        throttle.failed(f"client-{n}")
    assert len(throttle._failures) == 100
