"""Keep CPython's full garbage collections short while thousands of connections live.

CPython 3.11 walks its whole oldest generation in one full collection, with
the event loop stopped, each time that generation has grown by a quarter.
With 10,000 live connections that is over a million objects and 0.25-0.46 s
(BENCHMARKS.md), nearly all long-lived (connections, subscriptions) and
walked again for nothing.

``FrozenSurvivors`` freezes (``gc.freeze``) what exists at start and, after
each full collection, what survived it. The next full collection then walks
only what reached the oldest generation since the last one: a bounded amount,
so full collections get frequent and short.

The price: frozen objects are never walked, so a reference cycle among them
that becomes garbage later (a closed connection's objects pointing at each
other) stays in memory while frozen; what reference counting frees (most
objects) is freed as usual. A closed WebSocket leaves 6 such objects (its
asyncio transport's own cycle), down from 46 once ``channels.live.websocket``
drops aiohttp's kept tracebacks; an SSE stream none (measured with 1,000
connections). The bound: when the frozen objects are more than
``RECLAIM_FACTOR`` times those that survived the last complete pass, and
``RECLAIM_INTERVAL`` seconds have passed since it, all are unfrozen and the
next full collection is a complete pass (one long pause, as without this
module, but at most once per interval and per doubling of the heap, rather
than at each quarter of growth), after which freezing resumes. So frozen
garbage holds at most about the heap's size at the last complete pass plus
what one interval's closed connections leave. A surge of viewers right after
start, or right after a complete pass, causes no long pause.
"""

from __future__ import annotations

import gc
import time

#: A complete pass when the frozen objects outgrow the last complete pass's survivors this much,
RECLAIM_FACTOR = 2.0
#: and at least this many seconds after it.
RECLAIM_INTERVAL = 600.0


class FrozenSurvivors:
    """A ``gc.callbacks`` hook: freeze each full collection's survivors, unfreeze when due."""

    def __init__(self) -> None:
        gc.freeze()
        #: Objects that survived the last complete pass (or existed at start).
        self.baseline = max(1, gc.get_freeze_count())
        #: An upper estimate of the frozen objects: survivors added, frees not subtracted.
        self.frozen = self.baseline
        self.complete_passes = 0
        self.last_complete = time.monotonic()
        self._unfrozen = False

    def install(self) -> None:
        gc.callbacks.append(self)

    def uninstall(self) -> None:
        gc.callbacks.remove(self)

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase != "stop" or info["generation"] != 2:
            return
        # A full collection merges the younger generations: its survivors are
        # all in the oldest one now, and nothing else is.
        survivors = len(gc.get_objects(generation=2))
        if self._unfrozen:  # that was a complete pass
            self._unfrozen = False
            self.complete_passes += 1
            self.baseline = self.frozen = max(1, survivors)
            self.last_complete = time.monotonic()
        else:
            self.frozen += survivors
            due = time.monotonic() - self.last_complete >= RECLAIM_INTERVAL
            if due and self.frozen > RECLAIM_FACTOR * self.baseline:
                # The estimate never subtracts frees: count for real before unfreezing.
                self.frozen = gc.get_freeze_count() + survivors
                if self.frozen > RECLAIM_FACTOR * self.baseline:
                    gc.unfreeze()
                    self._unfrozen = True
                    return
        gc.freeze()
