"""The holder's deadline (assumption A5 of the safety argument).

Act as holder only until ``sent + ttl·(1−2ρ) − margin``, counted on the
holder's own monotonic clock from the moment it SENT the request that won
(or last renewed) the grant: the cluster may start the lease's clock any
time after the request left, and the holder cannot know when. ρ is the
cluster's drift bound, ``max_drift_ppm / 1e6``, which every grant carries.

Computed in whole microseconds, rounding the usable ttl down and the
margin up, as the server's core does: never later than the exact value.
"""

from __future__ import annotations

import math

#: ρ when a grant does not say: 1000 ppm = 0.1 %.
DEFAULT_DRIFT_PPM = 1000
#: The largest ρ a cluster accepts; ``ttl·(1−2ρ)`` needs ρ well below 1/2.
MAX_DRIFT_PPM = 100_000


def drift_ppm(value: object) -> int:
    """A grant's ``max_drift_ppm``, or the default when absent or invalid."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_DRIFT_PPM:
        return value
    return DEFAULT_DRIFT_PPM


def usable_micros(ttl_ms: int, max_drift_ppm: int = DEFAULT_DRIFT_PPM) -> int:
    """``ttl·(1−2ρ)`` in whole microseconds, rounded down."""
    return ttl_ms * 1000 * (1_000_000 - 2 * max_drift_ppm) // 1_000_000


def holder_deadline(
    sent: float,
    ttl_ms: int,
    max_drift_ppm: int = DEFAULT_DRIFT_PPM,
    margin: float = 0.0,
) -> float:
    """The last instant, on the clock ``sent`` was read on, at which the
    holder of a grant of ``ttl_ms`` won by a request sent at ``sent`` may
    still act as holder. A margin larger than the usable ttl gives ``sent``
    itself: a grant that cannot be used."""
    margin_us = math.ceil(max(margin, 0.0) * 1_000_000)
    left_us = max(usable_micros(ttl_ms, max_drift_ppm) - margin_us, 0)
    return sent + left_us / 1_000_000


def most_of_the_lease_left(
    sent: float,
    now: float,
    ttl_ms: int,
    max_drift_ppm: int = DEFAULT_DRIFT_PPM,
    margin: float = 0.0,
) -> bool:
    """Whether a grant won by a request sent at ``sent`` still leaves, at
    ``now``, at least two thirds of what a renewal sent now would give. If
    not (a long poll that waited), the holder renews before trusting it."""
    left = max(holder_deadline(sent, ttl_ms, max_drift_ppm, margin) - now, 0.0)
    fresh = max(holder_deadline(now, ttl_ms, max_drift_ppm, margin) - now, 0.0)
    return left * 3 >= fresh * 2
