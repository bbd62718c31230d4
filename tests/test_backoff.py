"""Tests for ``broadcaster.backoff``: doubling delays, the cap, jitter, resetting."""

from __future__ import annotations

import pytest

from broadcaster.backoff import Backoff, backoff_delay


def test_delay_doubles_from_first_up_to_the_cap():
    """Without jitter, the n-th failure waits first * 2**(n-1), never more than the cap."""
    delays = [backoff_delay(n, first=0.5, cap=30) for n in range(1, 10)]
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_delay_stays_at_the_cap_after_days_of_failures():
    """A huge failure count still gives the cap, not an overflow."""
    assert backoff_delay(10**9, first=0.05, cap=2.0) == 2.0


@pytest.mark.parametrize(("jitter", "low"), [(1.0, 0.0), (0.5, 2.0), (0.0, 4.0)])
def test_jitter_takes_off_at_most_its_share(jitter: float, low: float):
    """The random share removed is at most ``jitter`` of the delay; none removed at rng 0."""
    assert backoff_delay(4, first=0.5, cap=30, jitter=jitter, rng=lambda: 0.0) == 4.0
    smallest = backoff_delay(4, first=0.5, cap=30, jitter=jitter, rng=lambda: 1.0)
    assert smallest == pytest.approx(low)


def test_real_randomness_spreads_within_the_bounds():
    """With the default generator, full-jitter delays fall in (0, delay] and differ."""
    delays = {backoff_delay(3, first=0.5, cap=30, jitter=1.0) for _ in range(100)}
    assert all(0 < d <= 2.0 for d in delays)
    assert len(delays) > 90


@pytest.mark.parametrize(("failures", "jitter"), [(0, 0.0), (-1, 0.0), (1, -0.1), (1, 1.5)])
def test_nonsense_arguments_are_refused(failures: int, jitter: float):
    """A failure count below 1 or a jitter outside [0, 1] is a programming error."""
    with pytest.raises(ValueError):
        backoff_delay(failures, first=1, cap=2, jitter=jitter)


def test_backoff_counts_failures_and_starts_over_after_a_success():
    """``failed`` waits longer each time; ``succeeded`` makes the next failure a first one."""
    backoff = Backoff(0.1, 1.0)
    assert [backoff.failed() for _ in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff.failures == 6
    backoff.succeeded()
    assert backoff.failures == 0
    assert backoff.failed() == pytest.approx(0.1)
