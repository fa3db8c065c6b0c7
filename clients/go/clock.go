package tenure

import (
	"context"
	"time"
)

// lookEvery is the longest a wait trusts a timer before it reads the
// holder's clock again. Go's timers run on CLOCK_MONOTONIC, which stops
// while the machine is suspended; the holder's clock (CLOCK_BOOTTIME) does
// not. Re-reading it this often bounds how late a holder that slept
// through its deadline notices: at most this long after it resumes.
const lookEvery = 100 * time.Millisecond

// Clock is where a holder reads the time that its deadlines are counted
// on: a duration since some fixed origin. It must never go backwards and
// must count every moment the cluster counts, a suspend of the machine
// included.
//
// The default, BootTime, is Linux's CLOCK_BOOTTIME. A program may pass
// another to WithClock, for example in its own tests of how it stops when
// time jumps forward as it does after a suspend.
type Clock interface {
	Now() time.Duration
}

// BootTime is the default Clock: CLOCK_BOOTTIME on Linux, which keeps
// running while the machine is suspended. On other systems it is Go's
// monotonic clock, which may stop during a suspend; there a holder that
// sleeps through its deadline learns that its lease is gone only when the
// process's own timers catch up.
type BootTime struct{}

// Now reads the clock.
func (BootTime) Now() time.Duration { return bootTime() }

// sleepUntil waits until clock reads at or later, or ctx ends (false).
// It wakes at least every lookEvery, so it returns soon after a suspend
// that jumped past at, although Go's timer did not count the suspend.
func sleepUntil(ctx context.Context, clock Clock, at time.Duration) bool {
	for {
		left := at - clock.Now()
		if left <= 0 {
			return true
		}
		if left > lookEvery {
			left = lookEvery
		}
		t := time.NewTimer(left)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}
