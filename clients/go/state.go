package tenure

import (
	"fmt"
	"time"
)

// The states a name can be in, as State.State reports them.
const (
	// StateHeld: someone holds the name.
	StateHeld = "held"
	// StateLockDelayed: the last grant expired without a release, and only
	// its holder may take the name until the lock-delay ends.
	StateLockDelayed = "lock_delayed"
	// StateFree: nobody holds the name.
	StateFree = "free"
	// StateUnavailable: a watch line saying that the node could not reach
	// a quorum (or that no node could be reached); the watch keeps trying.
	StateUnavailable = "unavailable"
)

// State is who holds a name, as one node saw it at one moment: a read, the
// body of a 409, or a watch line.
//
// Remaining is on the answering node's clock and already stretched for
// clock drift: fine for people and for choosing when to try again, never
// for deciding that the caller itself holds anything (a Lease's own
// deadline does that).
type State struct {
	// State is StateHeld, StateLockDelayed, StateFree or StateUnavailable.
	State string
	// Holder is the holder (StateHeld), or the previous holder, the only
	// one who may take the name during its lock-delay (StateLockDelayed).
	Holder string
	// Token is the grant's fencing token; for StateFree, the last token
	// granted (0: never).
	Token uint64
	// Remaining is how much longer the node expects to refuse others.
	Remaining time.Duration
	// TTL is the grant's ttl, when the node said.
	TTL time.Duration
	// Waiters is how many long polls are queued for the name.
	Waiters int
	// Error is the node's explanation (409 bodies and unavailable lines).
	Error string
	// Err is set only on the last state of a watch that a node refused,
	// before the channel closes: a *DeniedError (ErrDenied) for a 401 or
	// 403, else an *InvalidError.
	Err error
}

// String says the state in a sentence.
func (s State) String() string {
	queued := ""
	if s.Waiters > 0 {
		queued = fmt.Sprintf(", %d waiting", s.Waiters)
	}
	switch s.State {
	case StateHeld:
		return fmt.Sprintf("held by %s with token %d, for %d ms more as the cluster counts%s",
			s.Holder, s.Token, s.Remaining.Milliseconds(), queued)
	case StateLockDelayed:
		return fmt.Sprintf("expired (token %d of %s), in its lock-delay for %d ms%s",
			s.Token, s.Holder, s.Remaining.Milliseconds(), queued)
	case StateFree:
		return fmt.Sprintf("free (last token %d)", s.Token)
	case StateUnavailable:
		return "unavailable: " + s.Error
	default:
		return "unknown state " + s.State
	}
}

// Leader is who leads an election: the holder of its lease, and the
// leadership's fencing token. The zero Leader (empty ID) means nobody.
type Leader struct {
	ID    string
	Token uint64
}

// leader is the Leader s shows: the zero Leader unless someone holds it.
func (s State) leader() Leader {
	if s.State != StateHeld {
		return Leader{}
	}
	return Leader{ID: s.Holder, Token: s.Token}
}
