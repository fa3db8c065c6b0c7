package tenure

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Sentinel errors: match them with errors.Is. Every error this package
// returns for a call to the cluster matches exactly one of them; the typed
// errors below carry the details (errors.As).
var (
	// ErrHeld: the lease rules refused the operation (a 409). Someone else
	// holds the name (or it is in its lock-delay), a wait ran out with the
	// name still held, or the grant a renewal or release named is no
	// longer current. See *HeldError.
	ErrHeld = errors.New("tenure: held by another")
	// ErrUnavailable: no node gave an answer before the call's deadline
	// (or the caller's context ended first). See *UnavailableError for
	// whether a write may still take effect.
	ErrUnavailable = errors.New("tenure: no node answered")
	// ErrInvalid: a value was refused, by the client before sending or by
	// a node (a 4xx other than 401, 403 and 409). See *InvalidError for
	// the field.
	ErrInvalid = errors.New("tenure: invalid request")
	// ErrLost: the lease can no longer be trusted. See *LostError.
	ErrLost = errors.New("tenure: lease lost")
	// ErrProtocol: a node answered something this client does not
	// understand. See *ProtocolError.
	ErrProtocol = errors.New("tenure: unexpected answer")
	// ErrDenied: the cluster requires a token and refused this one: none
	// or an unknown one was sent (401), or it lacks the permission for
	// that name or path (403). Never retried, on that node or another.
	// See *DeniedError.
	ErrDenied = errors.New("tenure: denied")
	// ErrNoLeader: Election.Leader found nobody leading.
	ErrNoLeader = errors.New("tenure: no leader")
)

// HeldError is a 409: who holds the name and for how long, as the
// answering node saw it. It matches ErrHeld.
type HeldError struct {
	// Name is the lease's name.
	Name string
	// State is the whole state the node reported; Holder, Token and
	// Remaining repeat its most used fields.
	State     State
	Holder    string
	Token     uint64
	Remaining time.Duration
	// Waited is how long an acquire waited before giving up (zero for
	// TryAcquire, renewals and releases).
	Waited time.Duration
}

func newHeldError(name string, s State, waited time.Duration) *HeldError {
	return &HeldError{Name: name, State: s, Holder: s.Holder, Token: s.Token, Remaining: s.Remaining, Waited: waited}
}

func (e *HeldError) Error() string {
	if e.Waited > 0 {
		return fmt.Sprintf("tenure: %s still %s after waiting %v", e.Name, e.State, e.Waited.Round(time.Millisecond))
	}
	if e.State.Error != "" {
		return "tenure: " + e.Name + ": " + e.State.Error
	}
	return fmt.Sprintf("tenure: %s is %s", e.Name, e.State)
}

// Unwrap makes errors.Is(err, ErrHeld) true.
func (e *HeldError) Unwrap() error { return ErrHeld }

// UnavailableError says that no node answered a call in time. It matches
// ErrUnavailable, and also the context's error when the caller's context
// ended the call (errors.Is(err, context.DeadlineExceeded)).
type UnavailableError struct {
	// OutcomeUnknown: an attempt may have reached a node (a timeout, a
	// connection lost after sending, or a 503 with outcome_unknown), so a
	// write may still take effect. Retrying an acquire or renewal is
	// safe; see docs/api.md.
	OutcomeUnknown bool
	// Attempts is how many requests were sent, across nodes.
	Attempts int
	// Last says what went wrong with the last attempt.
	Last string
	// Cause is the context's error, when the caller's context ended the
	// call; nil otherwise.
	Cause error
}

func (e *UnavailableError) Error() string {
	s := fmt.Sprintf("tenure: no node answered in time (%s); tried %d times", e.Last, e.Attempts)
	if e.OutcomeUnknown {
		s += "; the outcome is unknown"
	}
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

// Is makes errors.Is(err, ErrUnavailable) true.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// Unwrap gives the context's error, if the context ended the call.
func (e *UnavailableError) Unwrap() error { return e.Cause }

// InvalidError is a value refused before sending, or a 4xx (other than
// 401, 403 and 409) from a node. It matches ErrInvalid.
type InvalidError struct {
	// Field is what to fix ("name", "holder", "ttl", "endpoints", ...),
	// empty when the request as a whole was refused.
	Field   string
	Message string
}

func (e *InvalidError) Error() string { return "tenure: invalid request: " + e.Message }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Unwrap() error { return ErrInvalid }

func invalid(field, format string, args ...interface{}) *InvalidError {
	return &InvalidError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// DeniedError is a 401 or 403: the cluster checks tokens (it was started
// with --tokens) and refused the request. It matches ErrDenied. It never
// holds the token.
type DeniedError struct {
	// Status is 401 (no token, or an unknown one; see WithToken) or 403
	// (the token lacks the permission for the name, or for the path).
	Status int
	// Message is the node's explanation.
	Message string
}

func (e *DeniedError) Error() string {
	what := "no valid token"
	if e.Status == http.StatusForbidden {
		what = "the token lacks the permission"
	}
	s := fmt.Sprintf("tenure: denied (%d, %s)", e.Status, what)
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap makes errors.Is(err, ErrDenied) true.
func (e *DeniedError) Unwrap() error { return ErrDenied }

// ProtocolError is an answer this client does not understand. It matches
// ErrProtocol.
type ProtocolError struct {
	Endpoint string
	Message  string
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("tenure: unexpected answer from %s: %s", e.Endpoint, e.Message)
}

// Unwrap makes errors.Is(err, ErrProtocol) true.
func (e *ProtocolError) Unwrap() error { return ErrProtocol }

// LostReason is why a lease can no longer be trusted.
type LostReason int

const (
	// LostExpired: its local deadline passed without a successful renewal.
	LostExpired LostReason = iota + 1
	// LostRefused: a renewal was refused (409): the grant was released
	// with its token, superseded, or found expired by the cluster.
	LostRefused
	// LostReleased: this process released it.
	LostReleased
)

func (r LostReason) String() string {
	switch r {
	case LostExpired:
		return "its deadline passed without a successful renewal"
	case LostRefused:
		return "a renewal was refused"
	case LostReleased:
		return "it was released"
	default:
		return "unknown reason"
	}
}

// LostError is why a lease was lost. It matches ErrLost.
type LostError struct {
	Name   string
	Token  uint64
	Reason LostReason
	// State is what the refusing node reported (LostRefused only).
	State *State
}

func (e *LostError) Error() string {
	s := fmt.Sprintf("tenure: lease %s (token %d) lost: %s", e.Name, e.Token, e.Reason)
	if e.State != nil {
		s += ": " + e.State.String()
	}
	return s
}

// Unwrap makes errors.Is(err, ErrLost) true.
func (e *LostError) Unwrap() error { return ErrLost }
