package tenure

import (
	"context"
	"errors"
	"time"
)

const (
	// DefaultTTL is a lease's ttl unless TTL says otherwise.
	DefaultTTL = 10 * time.Second
	// DefaultMargin is the time a holder needs to actually stop acting,
	// subtracted from every deadline, unless Margin says otherwise.
	DefaultMargin = 100 * time.Millisecond
	// maxPoll is the longest single long poll; a longer wait is several
	// polls, so that a node that dies mid-wait costs at most this much.
	maxPoll = 30 * time.Second
)

// LockOption adjusts one acquisition (Acquire, TryAcquire) or election.
type LockOption func(*lockOptions)

type lockOptions struct {
	ttl     time.Duration
	margin  time.Duration
	holder  string
	wait    time.Duration
	hasWait bool
}

// TTL sets how long the lease lasts without a renewal (default 10 s), and
// so how long the name stays taken after a holder dies without releasing.
func TTL(ttl time.Duration) LockOption { return func(o *lockOptions) { o.ttl = ttl } }

// Margin sets how long before the end of the usable ttl the holder must
// stop (default 100 ms): the time the program needs to actually stop.
func Margin(margin time.Duration) LockOption { return func(o *lockOptions) { o.margin = margin } }

// Holder sets the holder id (default DefaultHolderID()). It must be unique
// to this process: the cluster treats two processes with one id as one
// holder.
func Holder(id string) LockOption { return func(o *lockOptions) { o.holder = id } }

// Wait bounds how long Acquire waits for the name (by default, until the
// context ends). When the wait runs out with the name still held, Acquire
// returns a *HeldError.
func Wait(d time.Duration) LockOption {
	return func(o *lockOptions) { o.wait, o.hasWait = d, true }
}

func buildLockOptions(opts []LockOption) (lockOptions, error) {
	o := lockOptions{ttl: DefaultTTL, margin: DefaultMargin}
	for _, opt := range opts {
		opt(&o)
	}
	if o.holder == "" {
		o.holder = DefaultHolderID()
	}
	if err := checkHolder(o.holder); err != nil {
		return o, err
	}
	if err := checkTTL(o.ttl); err != nil {
		return o, err
	}
	if o.margin < 0 {
		return o, invalid("margin", "margin is %v; it must not be negative", o.margin)
	}
	if o.hasWait && o.wait < 0 {
		return o, invalid("wait", "wait is %v; it must not be negative", o.wait)
	}
	// The server counts whole milliseconds; a fraction would only make the
	// holder's view differ from the cluster's.
	o.ttl = o.ttl.Truncate(time.Millisecond)
	return o, nil
}

// TryAcquire takes the lock on name if it is free, or returns a *HeldError
// (errors.Is(err, ErrHeld)) saying who holds it. The returned Lease renews
// itself until released or lost.
func (c *Client) TryAcquire(ctx context.Context, name string, opts ...LockOption) (*Lease, error) {
	o, err := buildLockOptions(opts)
	if err != nil {
		return nil, err
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	g, state, err := c.acquireOnce(ctx, name, o.holder, o.ttl, 0, 0)
	if err != nil {
		return nil, err
	}
	if state != nil {
		return nil, newHeldError(name, *state, 0)
	}
	return c.start(ctx, name, o, *g, false)
}

// Acquire waits for the lock on name: until it is granted, the Wait option
// runs out (a *HeldError), or ctx ends. A context deadline bounds the wait
// like Wait does; a cancelled context gives a *UnavailableError that
// matches ctx.Err(). It long-polls the cluster (30 s at a time), so waiters
// are served first come, first served.
//
// A grant won at the end of a long poll counts only from the poll's send
// time, which may be long ago: when that leaves less than two thirds of a
// fresh lease, Acquire renews the grant before returning and counts from
// the renewal's send time.
func (c *Client) Acquire(ctx context.Context, name string, opts ...LockOption) (*Lease, error) {
	o, err := buildLockOptions(opts)
	if err != nil {
		return nil, err
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	started := c.now()
	var giveUp time.Duration // zero: wait until ctx ends
	if o.hasWait {
		giveUp = started + o.wait
	}
	if dl, ok := ctx.Deadline(); ok {
		// Stop polling early enough for the last poll's answer to arrive
		// before the context ends.
		left := time.Until(dl)
		grace := left / 4
		if grace > longPollAnswerGrace {
			grace = longPollAnswerGrace
		}
		at := started + left - grace
		if giveUp == 0 || at < giveUp {
			giveUp = at
		}
	}
	for {
		poll := maxPoll
		if giveUp != 0 {
			if left := giveUp - c.now(); left < poll {
				poll = left
			}
			if poll < 0 {
				poll = 0
			}
		}
		g, state, err := c.acquireOnce(ctx, name, o.holder, o.ttl, poll, giveUp)
		switch {
		case err == nil && g != nil:
			lease, err := c.start(ctx, name, o, *g, poll > 0)
			if errors.Is(err, ErrHeld) {
				// The grant was lost between the poll and the renewal
				// (taken over after it expired, say): wait again.
				continue
			}
			return lease, err
		case err == nil:
			if giveUp != 0 && c.now() >= giveUp {
				return nil, newHeldError(name, *state, c.now()-started)
			}
			// The node's own cap on a wait ended first: poll again.
		case ctx.Err() != nil:
			return nil, err
		case errors.Is(err, ErrUnavailable) && (giveUp == 0 || c.now() < giveUp):
			// No node could answer for a whole call: keep waiting, as a
			// waiter would, after a pause.
			if !pause(ctx, jittered(time.Second)) {
				var ue *UnavailableError
				if errors.As(err, &ue) {
					again := *ue
					again.Cause = ctx.Err()
					return nil, &again
				}
				return nil, err
			}
		default:
			return nil, err
		}
	}
}

// pause waits d, or until ctx ends (false).
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// start hands out the Lease for g. A grant won by a long poll is trusted
// only from the poll's send time, which may be long ago, so unless that
// still leaves most of the lease it is renewed first and counted from the
// renewal's send time. A poll answered soon after it was sent (the lock
// was free, or freed quickly) keeps its own deadline: a renewal would only
// cost a round trip.
func (c *Client) start(ctx context.Context, name string, o lockOptions, g grant, fromLongPoll bool) (*Lease, error) {
	if fromLongPoll && !mostOfTheLeaseLeft(g.sent, c.now(), g.ttl, g.driftPPM, o.margin) {
		pollDeadline := g.deadline(o.margin)
		renewed, err := c.renew(ctx, name, o.holder, g.token, g.key, c.now()+c.callTimeout)
		switch {
		case err == nil:
			g = renewed
		case errors.Is(err, ErrHeld):
			return nil, err
		case c.now() >= pollDeadline:
			// Could not renew, and the poll's own deadline has passed:
			// give the grant back (in the background; it is bound to its
			// token, so a late release can only end this grant).
			go func() {
				_ = c.ReleaseWithKey(context.Background(), name, o.holder, g.token, g.key)
			}()
			return nil, err
		}
		// Could not renew, but the poll's own deadline still stands.
	}
	return newLease(c, name, o, g), nil
}
