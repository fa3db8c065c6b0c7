package tenure

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Lease is a held grant of a lock. It renews itself in a goroutine about
// every ttl/3 until it is released or lost.
//
// The holder may act only while the lease is valid: check Valid() before
// each action, or stop when Done() closes, and pass Token() to whatever the
// holder writes to. Both are computed on this process's clock from the
// send time of the request that won (or last renewed) the grant; the
// cluster is never asked, so they end on time even when no node answers.
type Lease struct {
	c      *Client
	name   string
	holder string
	token  uint64
	key    string
	ttl    time.Duration
	margin time.Duration

	mu       sync.Mutex
	deadline time.Duration // act as holder only before this reading of c.clock
	lastSent time.Duration // send time of the last successful grant or renewal
	lost     *LostError
	released bool // Release was called: later calls do nothing
	done     chan struct{}

	stop context.CancelFunc // ends the keepalive and the deadline watch
}

func newLease(c *Client, name string, o lockOptions, g grant) *Lease {
	ctx, stop := context.WithCancel(context.Background())
	l := &Lease{
		c: c, name: name, holder: o.holder, token: g.token, key: g.key, ttl: g.ttl, margin: o.margin,
		deadline: g.deadline(o.margin),
		lastSent: g.sent,
		done:     make(chan struct{}),
		stop:     stop,
	}
	go l.watchDeadline(ctx)
	go l.keepalive(ctx, g.sent)
	return l
}

// Token is the grant's fencing token: pass it to whatever the holder
// writes to, and have that refuse tokens lower than the highest it has
// seen.
func (l *Lease) Token() uint64 { return l.token }

// Key is the grant's secret key, from a cluster started with
// --grant-secret ("" otherwise): renewing or releasing the grant needs it,
// and only the holder ever sees it. Keep it out of logs.
func (l *Lease) Key() string { return l.key }

// Name is the lock's name.
func (l *Lease) Name() string { return l.name }

// Holder is the holder id the lease was granted to.
func (l *Lease) Holder() string { return l.holder }

// TTL is the grant's ttl: at least what was asked for (a re-acquisition
// by the same holder keeps the longer ttl of the grant it replaces).
func (l *Lease) TTL() time.Duration { return l.ttl }

// Valid says whether this process may still act as holder, right now: the
// lease is not lost and its local deadline has not passed.
func (l *Lease) Valid() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost == nil && l.c.now() < l.deadline
}

// Deadline is when the holder must stop unless a renewal moves it, as a
// time.Time for time.Until and timers. It is converted from the holder's
// clock as that reads now; read it again after a renewal.
func (l *Lease) Deadline() time.Time {
	l.mu.Lock()
	deadline := l.deadline
	l.mu.Unlock()
	return time.Now().Add(deadline - l.c.now())
}

// Done is closed when the lease can no longer be trusted: at its local
// deadline unless a renewal moved it, at once when a renewal is refused,
// or when it is released. It reads only this process's clock (rechecked
// at least every 100 ms), so it closes on time with the cluster
// unreachable.
func (l *Lease) Done() <-chan struct{} { return l.done }

// Err is nil while the lease is valid, and a *LostError (matching ErrLost)
// once Done is closed. A lease once lost stays lost.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost == nil {
		return nil
	}
	return l.lost
}

// Release stops acting as holder (Done closes first, as the safety
// argument asks), then ends the grant so the next waiter gets the name at
// once. It is retried only when the first attempt certainly did nothing;
// a *HeldError says the grant had already ended (expired, or superseded).
// Releasing again does nothing.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	already := l.released
	l.released = true
	l.mu.Unlock()
	if already {
		return nil
	}
	l.lose(LostReleased, nil)
	return l.c.ReleaseWithKey(ctx, l.name, l.holder, l.token, l.key)
}

// lose marks the lease lost for reason, unless it already is: the first
// reason stands. It closes Done and stops the goroutines.
func (l *Lease) lose(reason LostReason, state *State) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		return
	}
	l.lost = &LostError{Name: l.name, Token: l.token, Reason: reason, State: state}
	close(l.done)
	l.stop()
}

// watchDeadline closes Done at the local deadline. It sleeps at most
// lookEvery at a time, so a suspend that jumps past the deadline is
// noticed within that of resuming.
func (l *Lease) watchDeadline(ctx context.Context) {
	for {
		l.mu.Lock()
		deadline := l.deadline
		l.mu.Unlock()
		if l.c.now() >= deadline {
			l.lose(LostExpired, nil)
			return
		}
		// The deadline only moves later; wake at the one read above (or
		// sooner) and read it again.
		if !sleepUntil(ctx, l.c.clock, deadline) {
			return
		}
	}
}

// keepalive renews at about ttl/3 after each successful renewal's send
// time, retrying (inside renew, across nodes) until the deadline. Each
// success moves the deadline to that renewal's sent + ttl·(1−2ρ) − margin.
func (l *Lease) keepalive(ctx context.Context, lastSent time.Duration) {
	every := l.ttl / 3
	for {
		if !sleepUntil(ctx, l.c.clock, lastSent+every) {
			return
		}
		l.mu.Lock()
		deadline := l.deadline
		l.mu.Unlock()
		if l.c.now() >= deadline {
			l.lose(LostExpired, nil)
			return
		}
		g, err := l.c.renew(ctx, l.name, l.holder, l.token, l.key, deadline)
		var held *HeldError
		switch {
		case ctx.Err() != nil:
			return // released
		case err == nil && l.c.now() >= deadline:
			// A reply after the deadline cannot revive the lease: Done
			// may already have told the holder to stop.
			l.lose(LostExpired, nil)
			return
		case err == nil:
			lastSent = g.sent
			next := g.deadline(l.margin)
			l.mu.Lock()
			if next > l.deadline {
				l.deadline = next
			}
			l.lastSent = g.sent
			l.mu.Unlock()
		case errors.As(err, &held):
			state := held.State
			l.lose(LostRefused, &state)
			return
		case errors.Is(err, ErrUnavailable) && l.c.now() >= deadline:
			// Retried until the deadline: it has passed.
			l.lose(LostExpired, nil)
			return
		case errors.Is(err, ErrUnavailable):
			// The call's bound on attempts ran out before the deadline
			// (a long ttl): keep trying after a pause, until the deadline.
			if !pause(ctx, jittered(time.Second)) {
				return
			}
			lastSent = l.c.now() - every
		default:
			// A refusal that is not about the grant (a token the cluster
			// no longer accepts, say): keep trying until the deadline, at
			// a modest pace.
			lastSent = l.c.now()
			if lastSent > deadline {
				lastSent = deadline
			}
		}
	}
}
