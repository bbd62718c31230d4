"""Say how long to wait before trying again: a doubling delay, capped, with jitter.

Every retry loop of the service waits this way: the Redis bus resubscribing,
bus listeners listening again, the checkpoint submitter after a witness
failed, ``broadcaster follow`` reconnecting. The n-th consecutive failure
waits ``first * 2**(n - 1)``, at most ``cap``, less a random share of at
most ``jitter`` of it, so that clients or nodes that failed together do not
all come back at the same moment. ``jitter=1`` ("full jitter": anywhere up to
the delay) suits many clients reconnecting to one server; ``jitter=0`` is a
fixed schedule, for a loop nobody else shares.

Deliveries are not retried this way: they follow the operator's retry
schedule (``BROADCASTER_RETRY_SCHEDULE``) with jitter added, never taken off,
so that no attempt comes before its announced time (``channels.outbox``).
"""

from __future__ import annotations

import random
from collections.abc import Callable

#: Doublings after which the delay stops growing whatever ``cap`` is: keeps
#: ``2 ** n`` a float after days of failures.
_MAX_DOUBLINGS = 64


def backoff_delay(
    failures: int,
    *,
    first: float,
    cap: float,
    jitter: float = 0.0,
    rng: Callable[[], float] = random.random,
) -> float:
    """Return the seconds to wait after ``failures`` consecutive failures (1 for the first).

    ``rng`` returns a float in [0, 1), like ``random.random`` (tests pass their own).
    """
    if failures < 1:
        raise ValueError("failures counts from 1")
    if not 0.0 <= jitter <= 1.0:
        raise ValueError("jitter is a share of the delay, between 0 and 1")
    delay = min(cap, first * 2.0 ** min(failures - 1, _MAX_DOUBLINGS))
    return delay * (1.0 - jitter * rng())


class Backoff:
    """Count one loop's consecutive failures and return the wait after each."""

    def __init__(
        self,
        first: float,
        cap: float,
        *,
        jitter: float = 0.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.first = first
        self.cap = cap
        self.jitter = jitter
        self.rng = rng
        self.failures = 0

    def failed(self) -> float:
        """Count one more failure; return the seconds to wait before trying again."""
        self.failures += 1
        return backoff_delay(
            self.failures, first=self.first, cap=self.cap, jitter=self.jitter, rng=self.rng
        )

    def succeeded(self) -> None:
        """Start again from ``first``: the next failure is a first one."""
        self.failures = 0
