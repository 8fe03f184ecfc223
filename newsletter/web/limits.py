"""Per-client and per-address limits on the subscribe form, in this process's memory."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field


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
    """The forms' limits: per client address; per subscriber address, which caps how often
    one inbox gets a confirmation email however many forms name it (list bombing); per
    recipient domain, so a bot cannot bury one organisation's inboxes; and how soon after a
    form was served it may be posted (web/human.py: a bot posts at once)."""

    per_ip: RequestLimiter
    per_address: RequestLimiter
    per_domain: RequestLimiter = field(default_factory=lambda: RequestLimiter(500, 3600))
    human_seconds: float = 2.0


def default_limits() -> Limits:
    """10 requests per client in 10 minutes; one confirmation email per address in 24
    hours; 500 an hour per recipient domain; forms posted no sooner than 2 s after they
    were served."""
    return Limits(RequestLimiter(10, 600), RequestLimiter(1, 24 * 3600))
