package tenure

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"
)

// retry says which failures a call may retry, on the same node or another.
type retry int

const (
	// retryAlways: reads, renewals (bound to a token) and acquires (a
	// retried acquire by the same holder supersedes an unknown earlier
	// grant with a fresh one). A repeat can do no harm.
	retryAlways retry = iota
	// retryIfNotApplied: releases. Retried only when the first attempt
	// certainly had no effect (no connection, or a 503 that says the
	// outcome is known), so that a 409 always means what it says about
	// the caller's grant.
	retryIfNotApplied
)

// request is one request, as sent to any node.
type request struct {
	method string
	path   string
	body   []byte
	// attemptTimeout is how long one attempt may take (longer for a long
	// poll).
	attemptTimeout time.Duration
}

// wire is every field a node's JSON answers carry.
type wire struct {
	State          string  `json:"state"`
	Holder         *string `json:"holder"`
	Token          *uint64 `json:"token"`
	RemainingMs    *uint64 `json:"remaining_ms"`
	TTLMs          *uint64 `json:"ttl_ms"`
	Waiters        int     `json:"waiters"`
	MaxDriftPPM    *uint64 `json:"max_drift_ppm"`
	Error          string  `json:"error"`
	Field          *string `json:"field"`
	OutcomeUnknown *bool   `json:"outcome_unknown"`
	Key            string  `json:"key"`
}

// answer is a node's answer, and when the request that got it was sent.
type answer struct {
	status int
	body   wire
	// sent is when the attempt that got this answer was sent, on the
	// holder's clock: where a grant's validity starts.
	sent     time.Duration
	endpoint string
}

// attemptError is why one attempt failed, and whether it may have been
// applied by the node.
type attemptError struct {
	message      string
	refused      bool // nothing listens there
	maybeApplied bool // sent, or possibly sent
}

// send sends req to the nodes in turn until one answers with anything but
// 503, until (on the client's clock) passes, or ctx ends, retrying as r
// allows. It starts with the last node that answered, moves on at a
// refused connection, a timeout or a 503, and backs off (exponential, full
// jitter) only after a full round of failures.
func (c *Client) send(ctx context.Context, req request, r retry, until time.Duration) (*answer, error) {
	n := len(c.endpoints)
	first := int(c.preferred.Load()) % n
	backoff := backoffFirst
	last := "no attempt made before the deadline"
	outcomeUnknown := false
	attempts := 0
	for attempts < maxAttempts {
		if err := ctx.Err(); err != nil {
			return nil, &UnavailableError{OutcomeUnknown: outcomeUnknown, Attempts: attempts, Last: last, Cause: err}
		}
		now := c.now()
		if now >= until {
			break
		}
		index := (first + attempts) % n
		attempts++
		endpoint := c.endpoints[index]
		limit := req.attemptTimeout
		if left := until - now; left < limit {
			limit = left
		}
		sent := c.now()
		status, body, failure := c.once(ctx, endpoint, req, limit)
		if failure == nil && status != http.StatusServiceUnavailable {
			c.preferred.Store(uint32(index))
			return &answer{status: status, body: body, sent: sent, endpoint: endpoint}, nil
		}
		maybeApplied := false
		if failure == nil {
			// A 503 without outcome_unknown is not from a tenure node's
			// API (a connection limit, say): assume the worst.
			maybeApplied = body.OutcomeUnknown == nil || *body.OutcomeUnknown
			msg := body.Error
			if msg == "" {
				msg = "unavailable"
			}
			last = fmt.Sprintf("%s: 503 %s", endpoint, msg)
		} else {
			maybeApplied = failure.maybeApplied
			last = endpoint + ": " + failure.message
		}
		outcomeUnknown = outcomeUnknown || maybeApplied
		// The next call starts with the next node, not this failing one.
		c.preferred.Store(uint32((index + 1) % n))
		if maybeApplied && r == retryIfNotApplied {
			break
		}
		if attempts%n == 0 {
			pause := jittered(backoff)
			if left := until - c.now(); left < pause {
				pause = left
			}
			if pause > 0 {
				t := time.NewTimer(pause)
				select {
				case <-ctx.Done():
					t.Stop()
				case <-t.C:
				}
			}
			backoff *= 2
			if backoff > backoffMax {
				backoff = backoffMax
			}
		}
	}
	return nil, &UnavailableError{OutcomeUnknown: outcomeUnknown, Attempts: attempts, Last: last, Cause: ctx.Err()}
}

// once makes one attempt at one node, within limit.
func (c *Client) once(ctx context.Context, endpoint string, req request, limit time.Duration) (int, wire, *attemptError) {
	var body wire
	actx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var reader io.Reader
	if req.body != nil {
		reader = bytes.NewReader(req.body)
	}
	hreq, err := http.NewRequestWithContext(actx, req.method, endpoint+req.path, reader)
	if err != nil {
		return 0, body, &attemptError{message: err.Error()}
	}
	if req.body != nil {
		hreq.Header.Set("Content-Type", "application/json")
	}
	c.authorize(hreq)
	resp, err := c.http.Do(hreq)
	if err != nil {
		return 0, body, classify(err, actx, limit)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return 0, body, &attemptError{message: "reading the answer: " + err.Error(), maybeApplied: true}
	}
	if len(data) > maxAnswerBytes {
		return 0, body, &attemptError{message: "answer too long", maybeApplied: true}
	}
	denied := resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden
	if len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, &body); err != nil && denied {
			// A refusal is final whatever its body says: not retried.
			body = wire{}
		} else if err != nil {
			return 0, body, &attemptError{message: fmt.Sprintf("answer (status %d) is not JSON: %v", resp.StatusCode, err), maybeApplied: true}
		}
	}
	body.Error = c.redact(body.Error)
	return resp.StatusCode, body, nil
}

// classify says whether a failed attempt may have reached the node: a
// refused connection or a failed dial certainly did not; anything after
// the connection was made (a timeout, a reset) may have.
func classify(err error, actx context.Context, limit time.Duration) *attemptError {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return &attemptError{message: "cannot connect: connection refused", refused: true}
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return &attemptError{message: "cannot connect: " + op.Err.Error()}
	}
	if actx.Err() == context.DeadlineExceeded {
		return &attemptError{message: fmt.Sprintf("no answer within %d ms", limit.Milliseconds()), maybeApplied: true}
	}
	return &attemptError{message: err.Error(), maybeApplied: true}
}
