"""The holder's clock: where send times and deadlines are read.

A holder must stop acting by its deadline however the time passed, a
suspend of the machine included. ``time.monotonic`` (``CLOCK_MONOTONIC`` on
Linux) stops while suspended, so on Linux the client reads
``CLOCK_BOOTTIME``, which runs on. Python's own timed waits run on
``CLOCK_MONOTONIC`` too, so every wait here wakes at least every
``LOOK_EVERY`` seconds to read the clock again.
"""

from __future__ import annotations

import time
from typing import Callable

#: A clock: seconds since some fixed origin, never going backwards.
Clock = Callable[[], float]

#: The longest a wait trusts a timer before it reads the clock again: the
#: most a holder may be late to notice a suspend that ended its lease.
LOOK_EVERY = 0.1


def _pick() -> Clock:
    clock_id = getattr(time, "CLOCK_BOOTTIME", None)
    if isinstance(clock_id, int):
        try:
            time.clock_gettime(clock_id)
        except OSError:  # a kernel or sandbox without it
            return time.monotonic
        boot_id: int = clock_id

        def boottime() -> float:
            return time.clock_gettime(boot_id)

        return boottime
    return time.monotonic


#: ``CLOCK_BOOTTIME`` where there is one, else ``time.monotonic``.
boottime: Clock = _pick()
