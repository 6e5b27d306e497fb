"""Failed logins per client: after too many in a window, refuse further tries until the window passes."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable


class LoginThrottle:
    """`limit` failures per client within `window_s`; at most `max_clients` tracked (oldest forgotten first).

    Only failures are counted, so a client that logs in right is never slowed; the memory held is bounded
    whatever the number of distinct clients an attacker uses.
    """

    def __init__(
        self,
        limit: int = 10,
        window_s: float = 60.0,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again (0 when it may now)."""
        failures = self._recent(client)
        if failures is None or len(failures) < self.limit:
            return 0.0
        return max(0.0, failures[0] + self.window_s - self._clock())

    def failed(self, client: str) -> int:
        """Record a failure; the number of failures of `client` within the window."""
        failures = self._recent(client)
        if failures is None:
            failures = self._failures[client] = deque(maxlen=self.limit)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
        failures.append(self._clock())
        self._failures.move_to_end(client)
        return len(failures)

    def _recent(self, client: str) -> deque[float] | None:
        failures = self._failures.get(client)
        if failures is None:
            return None
        cutoff = self._clock() - self.window_s
        while failures and failures[0] <= cutoff:
            failures.popleft()
        return failures
