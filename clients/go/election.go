package tenure

import (
	"context"
	"sync"
)

// Election is a leader election on one name, in the manner of etcd's
// concurrency.Election: the leader is the holder of the lease name, and
// its token is the leadership's fencing token. There is no other state:
// Leader is a linearizable read, Observe follows the watch stream.
//
// An Election is safe for concurrent use. One process campaigns with one
// id at a time.
type Election struct {
	c    *Client
	name string
	opts []LockOption

	mu    sync.Mutex
	lease *Lease // while this process leads (or led, until Resign)
}

// Election returns the election on name. opts (TTL, Margin) apply to each
// Campaign; TTL is how long leadership outlives a leader that dies
// without resigning.
func (c *Client) Election(name string, opts ...LockOption) *Election {
	return &Election{c: c, name: name, opts: opts}
}

// Campaign waits until id leads (a long-poll acquire, renewed before it
// returns if the wait was long), or ctx ends. id must be unique among the
// candidates. Once it returns nil, leadership lasts until Done closes.
func (e *Election) Campaign(ctx context.Context, id string) error {
	opts := append(append([]LockOption(nil), e.opts...), Holder(id))
	lease, err := e.c.Acquire(ctx, e.name, opts...)
	if err != nil {
		return err
	}
	e.mu.Lock()
	old := e.lease
	e.lease = lease
	e.mu.Unlock()
	if old != nil && old != lease {
		// An earlier leadership of this process: stop its renewals. Its
		// grant was superseded (same holder) or is another id's to end.
		old.lose(LostReleased, nil)
	}
	return nil
}

// Lease is this process's leadership lease, nil before Campaign succeeds.
func (e *Election) Lease() *Lease {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lease
}

// IsLeader says whether this process leads right now, by its own deadline.
func (e *Election) IsLeader() bool {
	l := e.Lease()
	return l != nil && l.Valid()
}

// Token is this process's leadership token while it leads, else 0.
func (e *Election) Token() uint64 {
	l := e.Lease()
	if l == nil || !l.Valid() {
		return 0
	}
	return l.Token()
}

// closed is a channel that is already closed.
var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Done is closed when this process's leadership ends (at once when it does
// not lead). Computed locally, like Lease.Done.
func (e *Election) Done() <-chan struct{} {
	l := e.Lease()
	if l == nil {
		return closed
	}
	return l.Done()
}

// Resign stops leading (Done closes first) and frees the name at once for
// the next candidate. It does nothing when this process does not lead.
func (e *Election) Resign(ctx context.Context) error {
	e.mu.Lock()
	l := e.lease
	e.lease = nil
	e.mu.Unlock()
	if l == nil {
		return nil
	}
	return l.Release(ctx)
}

// Leader reads who leads (a linearizable read); ErrNoLeader when nobody
// does.
func (e *Election) Leader(ctx context.Context) (Leader, error) {
	s, err := e.c.Get(ctx, e.name)
	if err != nil {
		return Leader{}, err
	}
	if s.State != StateHeld {
		return Leader{}, ErrNoLeader
	}
	return s.leader(), nil
}

// Observe reports who leads: the current leader at once, then each change,
// with the zero Leader when nobody leads (a handover by resignation may
// show it in between). It follows the watch stream, reconnecting across
// nodes by itself; a node's "unavailable" is not a change, and repeated
// states are reported once. The channel is closed when ctx ends (at
// once, if the election's name is not a valid lease name), or when a node
// refuses the watch (a token without read permission, say: Leader then
// returns the error).
func (e *Election) Observe(ctx context.Context) <-chan Leader {
	out := make(chan Leader)
	states, err := e.c.Watch(ctx, e.name)
	if err != nil {
		close(out)
		return out
	}
	go func() {
		defer close(out)
		first := true
		var last Leader
		for s := range states {
			if s.State == StateUnavailable {
				continue
			}
			leader := s.leader()
			if !first && leader == last {
				continue
			}
			first, last = false, leader
			select {
			case out <- leader:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
