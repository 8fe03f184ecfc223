"""Per-client and per-address limits on the subscribe form, in this process's memory."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass


class RequestLimiter:
    """At most `limit` events per key in `window` seconds, in this process's memory (which
    is enough for one server; behind several, put the limit in the proxy too)."""

    def __init__(self, limit: int, window: float, max_keys: int = 100_000) -> None:
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str, now: float | None = None) -> bool:
        moment = time.monotonic() if now is None else now
        with self._lock:
            events = self._events.pop(key, deque())
            while events and events[0] <= moment - self.window:
                events.popleft()
            allowed = len(events) < self.limit
            if allowed:
                events.append(moment)
            self._events[key] = events
            while len(self._events) > self.max_keys:
                self._events.popitem(last=False)
            return allowed


@dataclass
class Limits:
    """The form's limits: per client address, and per subscriber address (which also caps
    how often one inbox gets a confirmation email)."""

    per_ip: RequestLimiter
    per_address: RequestLimiter


def default_limits() -> Limits:
    """10 requests per client in 10 minutes; 3 confirmation emails per address an hour."""
    return Limits(RequestLimiter(10, 600), RequestLimiter(3, 3600))
