"""``Lock`` and its ``Lease``: acquire, keep alive, know when to stop.

The rule (assumption A5 of the safety argument): act as holder only until
``sent + ttl·(1−2ρ) − margin``, where ``sent`` is when the request that won
(or last renewed) the grant left this process. The deadline lives here, on
this process's clock; the cluster is never asked whether the lease is
still held, so ``Lease.lost`` is set on time even when no node answers.
"""

from __future__ import annotations

import random
import threading
import time
import weakref
from typing import TYPE_CHECKING, Optional, Union

from . import _inputs, _wire
from ._clock import LOOK_EVERY
from ._lease_state import LeaseCore
from .errors import Error, Held, LeaseLost, LostReason, Unavailable, WaitExpired
from .state import Grant, LeaseState

if TYPE_CHECKING:
    from types import TracebackType

    from .client import Client

#: Time the holder needs to actually stop acting, taken off every deadline.
DEFAULT_MARGIN = 0.1
DEFAULT_TTL = 10.0


class _Unset:
    """No value given: use the lock's own."""


UNSET = _Unset()


class Lock:
    """How to take the lock ``name``. ``with lock as lease:`` acquires,
    and releases on exit; or call ``acquire()`` and ``Lease.release()``.

    ``wait``: 0 takes the lock if it is free and raises ``Held`` if not;
    a number of seconds waits that long, then raises ``WaitExpired`` (a
    ``Held``); ``None`` waits as long as it takes. ``holder`` defaults to
    ``{hostname}:{pid}:{random}`` and must be unique to this process.
    ``margin``: how long before the end of the usable ttl the holder must
    have stopped.
    """

    def __init__(
        self,
        client: Client,
        name: str,
        *,
        ttl: float = DEFAULT_TTL,
        wait: Optional[float] = 0.0,
        holder: Optional[str] = None,
        margin: float = DEFAULT_MARGIN,
    ) -> None:
        self.client = client
        self.name = _inputs.name(name)
        self.holder = _inputs.holder(holder if holder is not None else _inputs.default_holder_id())
        _inputs.ttl_ms(ttl)
        self.ttl = ttl
        self.wait = _inputs.checked_wait(wait)
        self.margin = _inputs.margin(margin)
        self._lease: Optional[Lease] = None

    def acquire(self, wait: Union[float, None, _Unset] = UNSET) -> Lease:
        """Take the lock, waiting as ``wait`` says (by default the lock's)."""
        w = self.wait if isinstance(wait, _Unset) else _inputs.checked_wait(wait)
        if w == 0:
            return self._try_acquire()
        return self._acquire_waiting(w)

    def _try_acquire(self) -> Lease:
        answer = self.client.acquire_once(self.name, self.holder, self.ttl)
        if isinstance(answer, LeaseState):
            raise Held(f"{self.name} is {answer}", answer)
        return self._start(answer, from_long_poll=False)

    def _acquire_waiting(self, wait: Optional[float]) -> Lease:
        clock = self.client.clock
        started = clock()
        give_up = None if wait is None else started + wait
        while True:
            left = _wire.MAX_POLL if give_up is None else max(give_up - clock(), 0.0)
            poll = min(left, _wire.MAX_POLL)
            try:
                answer = self.client.acquire_once(self.name, self.holder, self.ttl, poll, give_up)
            except Unavailable:
                # No node answered for a whole call: an unbounded wait goes
                # on, as a waiter would; a bounded one ends at its end.
                if give_up is not None and clock() >= give_up:
                    raise
                time.sleep(random.uniform(0, 1.0))
                continue
            if isinstance(answer, Grant):
                try:
                    return self._start(answer, from_long_poll=poll > 0)
                except Held:
                    continue  # lost between the poll and the renewal: wait again
            if give_up is not None and clock() >= give_up:
                raise WaitExpired(clock() - started, answer)
            # The node's wait ended first (its own cap): poll again.

    def _start(self, grant: Grant, from_long_poll: bool) -> Lease:
        """The lease for ``grant``. A grant won by a long poll counts from
        the poll's send time, which may be long ago: unless that still
        leaves most of a fresh lease, renew first and count from the
        renewal's send time. A poll answered soon after it was sent keeps
        its own deadline: a renewal would only cost a round trip."""
        clock = self.client.clock
        if from_long_poll and not grant.most_of_the_lease_left(clock(), self.margin):
            poll_deadline = grant.deadline(self.margin)
            try:
                grant = self.client.renew(self.name, self.holder, grant.token, key=grant.key)
            except Held:
                raise
            except Error:
                # Could not renew; the poll's own deadline may still do.
                if clock() >= poll_deadline:
                    _in_background(self.client, self.name, self.holder, grant.token, grant.key)
                    raise
        return Lease(self.client, self.name, self.holder, grant, self.margin)

    def __enter__(self) -> Lease:
        self._lease = self.acquire()
        return self._lease

    def __exit__(
        self,
        kind: Optional[type[BaseException]],
        error: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            lease._exit(error is not None)


class Lease:
    """A held lease: the guard of one grant, renewed in a background thread
    at about ttl/3 while it lives. Check ``is_valid()`` or ``check()``
    before each action, and pass ``token`` to whatever you write to.

    ``lost`` is a ``threading.Event`` set when the lease can no longer be
    trusted: at the local deadline unless a renewal moved it, at once when
    a renewal is refused, or on release. It reads only this process's
    clock, so it is set on time when no node answers.
    """

    def __init__(self, client: Client, name: str, holder: str, grant: Grant, margin: float) -> None:
        self.client = client
        self.name = name
        self.holder = holder
        #: The grant as won: its token, ttl, drift bound and send time.
        self.grant = grant
        self.lost = threading.Event()
        core = LeaseCore(name, grant, margin, client.clock)
        core.on_lost = self.lost.set
        self._core = core
        self._released = False
        for target in (_keepalive, _watchdog):
            thread_name = f"tenure-{target.__name__[1:]}-{name}"
            args = (client, holder, core)
            threading.Thread(target=target, args=args, name=thread_name, daemon=True).start()
        # A lease dropped unreleased stops renewing and is released in the
        # background; at interpreter exit it is left to expire.
        self._finalizer = weakref.finalize(self, _abandon, client, holder, core)
        self._finalizer.atexit = False  # type: ignore[misc]  # a property typeshed misses

    @property
    def token(self) -> int:
        """The fencing token of this grant."""
        return self.grant.token

    @property
    def ttl(self) -> float:
        """The grant's ttl in seconds (at least what was asked for)."""
        return self.grant.ttl

    @property
    def deadline(self) -> float:
        """Act as holder only before this reading of ``client.clock``."""
        return self._core.deadline

    @property
    def sent(self) -> float:
        """When the last successful grant or renewal was sent."""
        return self._core.sent

    @property
    def lost_reason(self) -> Optional[LostReason]:
        return self._core.reason

    def remaining(self) -> float:
        """Seconds left before the deadline; 0 once lost."""
        return max(self._core.deadline - self.client.clock(), 0.0) if self._core.valid() else 0.0

    def is_valid(self) -> bool:
        """Whether this process may still act as holder, right now."""
        return self._core.valid()

    def check(self) -> None:
        """Raise ``LeaseLost`` unless this process may still act as holder."""
        self._core.check()

    def wait_lost(self, timeout: Optional[float] = None) -> Optional[LeaseLost]:
        """Block until the lease is lost (the error saying why), or
        ``timeout`` seconds pass (``None``)."""
        if self.lost.wait(timeout):
            return self._core.error()
        return None

    def release(self) -> None:
        """Stop acting as holder, then end the grant: the lease is lost
        before the release is sent, as the safety argument asks."""
        if self._released:
            return  # once is enough
        self._finalizer.detach()
        self._released = True
        self._core.lose(LostReason.RELEASED)
        self.client.release(self.name, self.holder, self.token, key=self.grant.key)

    def _exit(self, failing: bool) -> None:
        """The end of a ``with`` block: release. A lease lost during the
        block raises ``LeaseLost`` unless the block itself raised (its
        error matters more)."""
        if self._released:
            return
        lost = self._core.error() if self._core.reason is not None else None
        if self._core.reason is LostReason.REFUSED:  # the grant is gone already
            self._finalizer.detach()
            self._released = True
        else:
            try:
                self.release()
            except Error as e:
                if failing:
                    return
                if lost is not None:
                    raise lost from e
                raise
        if lost is not None and not failing:
            raise lost

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        kind: Optional[type[BaseException]],
        error: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self._exit(error is not None)


def _in_background(
    client: Client, name: str, holder: str, token: int, key: Optional[str]
) -> None:
    def release() -> None:
        try:
            client.release(name, holder, token, key=key)
        except Exception:  # best effort (even on a closed client): the lease ends at its ttl
            pass

    threading.Thread(target=release, name=f"tenure-release-{name}", daemon=True).start()


def _abandon(client: Client, holder: str, core: LeaseCore) -> None:
    core.lose(LostReason.RELEASED)
    _in_background(client, core.name, holder, core.grant.token, core.grant.key)


def _watchdog(client: Client, holder: str, core: LeaseCore) -> None:
    """Sets ``lost`` at the local deadline, on the holder's clock alone,
    whatever the keepalive is doing (it may be stuck on a frozen node)."""
    with core.cond:
        while not core.expire_if_due():
            core.cond.wait(min(core.deadline - core.clock(), LOOK_EVERY))


def _keepalive(client: Client, holder: str, core: LeaseCore) -> None:
    """Renew at ttl/3 after each successful renewal's send time, retrying
    (inside ``Client.renew``) until the deadline."""
    every = core.grant.ttl / 3
    last_sent = core.sent
    while True:
        with core.cond:
            while core.reason is None and core.clock() < last_sent + every:
                core.cond.wait(min(last_sent + every - core.clock(), LOOK_EVERY))
            if core.expire_if_due():
                return
            deadline = core.deadline
        try:
            grant = client.renew(
                core.name, holder, core.grant.token, until=deadline, key=core.grant.key
            )
        except Held as e:
            core.lose(LostReason.REFUSED, e.state)
            return
        except Unavailable:
            if core.clock() < deadline:
                # A call also stops at its bound on attempts, which a long
                # ttl outlasts: go on until the deadline itself.
                last_sent = core.clock() - every
                continue
            core.lose(LostReason.EXPIRED)
            return
        except Error:
            # A refusal that is not about the grant (``Denied``: the token
            # was withdrawn mid-lease): keep trying until the deadline, at
            # a modest pace; the grant is still this holder's.
            last_sent = min(core.clock(), deadline)
            continue
        if not core.renewed(grant):
            return
        last_sent = grant.sent
