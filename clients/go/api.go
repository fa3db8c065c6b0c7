package tenure

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

const (
	maxNameBytes   = 128
	maxHolderBytes = 128
	minTTL         = 10 * time.Millisecond
	maxTTL         = 24 * time.Hour
	// longPollAnswerGrace is how long after the end of a caller's wait an
	// acquire may still take, for the answer of a long poll that ended
	// then to arrive.
	longPollAnswerGrace = 500 * time.Millisecond
)

// grant is a grant or renewal: its token and ttl, and the send time it
// counts from.
type grant struct {
	token    uint64
	ttl      time.Duration
	holder   string
	sent     time.Duration // when the winning request was sent, on the client's clock
	driftPPM uint32        // the cluster's ρ, as the answering node gave it
	key      string        // the grant's key, from a cluster started with --grant-secret
}

func (g grant) deadline(margin time.Duration) time.Duration {
	return holderDeadline(g.sent, g.ttl, g.driftPPM, margin)
}

func checkName(name string) error {
	if name == "" || len(name) > maxNameBytes {
		return invalid("name", "name is %d bytes; it must be 1 to %d", len(name), maxNameBytes)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '.' || r == '_' || r == '-' || r == '/' || r == ':'
		if !ok {
			return invalid("name", "name %q has %q; use ASCII letters, digits and . _ - / :", name, r)
		}
	}
	return nil
}

func checkHolder(holder string) error {
	if holder == "" || len(holder) > maxHolderBytes {
		return invalid("holder", "holder is %d bytes; it must be 1 to %d", len(holder), maxHolderBytes)
	}
	for _, r := range holder {
		if r <= ' ' || r > '~' {
			return invalid("holder", "holder %q has %q; use printable ASCII without spaces", holder, r)
		}
	}
	return nil
}

func checkTTL(ttl time.Duration) error {
	if ttl < minTTL || ttl > maxTTL {
		return invalid("ttl", "ttl is %v; it must be between %v and %v", ttl, minTTL, maxTTL)
	}
	return nil
}

func toGrant(a *answer) (grant, error) {
	b := a.body
	if b.Token == nil || b.TTLMs == nil || b.Holder == nil {
		return grant{}, &ProtocolError{Endpoint: a.endpoint, Message: "a grant without token, ttl_ms or holder"}
	}
	ttl := time.Duration(*b.TTLMs) * time.Millisecond
	if checkTTL(ttl) != nil {
		return grant{}, &ProtocolError{Endpoint: a.endpoint, Message: fmt.Sprintf("a grant with ttl_ms %d", *b.TTLMs)}
	}
	drift := uint32(defaultDriftPPM)
	if b.MaxDriftPPM != nil && *b.MaxDriftPPM <= maxDriftPPM {
		drift = uint32(*b.MaxDriftPPM)
	}
	return grant{token: *b.Token, ttl: ttl, holder: *b.Holder, sent: a.sent, driftPPM: drift, key: b.Key}, nil
}

func toState(a *answer) (State, error) {
	b := a.body
	s := State{State: b.State, Waiters: b.Waiters, Error: b.Error}
	if b.Holder != nil {
		s.Holder = *b.Holder
	}
	if b.Token != nil {
		s.Token = *b.Token
	}
	if b.RemainingMs != nil {
		s.Remaining = time.Duration(*b.RemainingMs) * time.Millisecond
	}
	if b.TTLMs != nil {
		s.TTL = time.Duration(*b.TTLMs) * time.Millisecond
	}
	switch {
	case s.State == StateHeld && b.Holder != nil && b.Token != nil,
		s.State == StateLockDelayed && b.Holder != nil && b.Token != nil,
		s.State == StateFree && b.Token != nil:
		return s, nil
	}
	return s, &ProtocolError{Endpoint: a.endpoint, Message: fmt.Sprintf("status %d without a lease state", a.status)}
}

// refusal is the error for an answer that is neither what was asked nor a
// 409: a 401 or 403 (a *DeniedError), another 4xx refusal of the input, or
// something unexpected.
func refusal(a *answer) error {
	if a.status == http.StatusUnauthorized || a.status == http.StatusForbidden {
		return &DeniedError{Status: a.status, Message: a.body.Error}
	}
	if a.status >= 400 && a.status < 500 {
		msg := a.body.Error
		if msg == "" {
			msg = fmt.Sprintf("refused with status %d", a.status)
		}
		field := ""
		if a.body.Field != nil {
			field = *a.body.Field
		}
		return &InvalidError{Field: field, Message: msg}
	}
	return &ProtocolError{Endpoint: a.endpoint, Message: fmt.Sprintf("status %d", a.status)}
}

// conflict is the error for a 409 on a renewal or release.
func conflict(name string, a *answer) error {
	s, err := toState(a)
	if err != nil {
		return err
	}
	return newHeldError(name, s, 0)
}

// acquireOnce is PUT /v1/locks/{name} without a token: one acquire, or a
// long poll of up to wait. A 409 gives its state and a nil grant. giveUp
// (when nonzero, on the client's clock) bounds the retries: a caller whose
// own wait ends there must not be kept past it by retries against nodes
// that are down.
func (c *Client) acquireOnce(ctx context.Context, name, holder string, ttl, wait, giveUp time.Duration) (*grant, *State, error) {
	path := "/v1/locks/" + name
	attempt := c.attemptTimeout
	if wait > 0 {
		path += fmt.Sprintf("?wait=%dms", ceilMillis(wait))
		attempt += wait
	}
	body, _ := json.Marshal(map[string]interface{}{"holder": holder, "ttl_ms": ttl.Milliseconds()})
	req := request{method: http.MethodPut, path: path, body: body, attemptTimeout: attempt}
	span := c.callTimeout
	if attempt > span {
		span = attempt
	}
	until := c.now() + span
	if giveUp != 0 && giveUp+longPollAnswerGrace < until {
		// A long poll ends at giveUp on the node; its answer gets a
		// moment more to arrive.
		until = giveUp + longPollAnswerGrace
	}
	a, err := c.send(ctx, req, retryAlways, until)
	if err != nil {
		return nil, nil, err
	}
	switch a.status {
	case http.StatusCreated:
		g, err := toGrant(a)
		if err != nil {
			return nil, nil, err
		}
		return &g, nil, nil
	case http.StatusConflict:
		s, err := toState(a)
		if err != nil {
			return nil, nil, err
		}
		return nil, &s, nil
	default:
		return nil, nil, refusal(a)
	}
}

// renew is PUT /v1/locks/{name} with the token: renew grant token,
// retrying until until. A 409 is a *HeldError: the grant is gone.
func (c *Client) renew(ctx context.Context, name, holder string, token uint64, key string, until time.Duration) (grant, error) {
	fields := map[string]interface{}{"holder": holder, "token": token}
	if key != "" {
		fields["key"] = key
	}
	body, _ := json.Marshal(fields)
	req := request{method: http.MethodPut, path: "/v1/locks/" + name, body: body, attemptTimeout: c.attemptTimeout}
	a, err := c.send(ctx, req, retryAlways, until)
	if err != nil {
		return grant{}, err
	}
	switch a.status {
	case http.StatusOK:
		return toGrant(a)
	case http.StatusConflict:
		return grant{}, conflict(name, a)
	default:
		return grant{}, refusal(a)
	}
}

// Release ends grant token of holder on name (DELETE). Most programs call
// Lease.Release instead; this is for a grant taken by another process, or
// by an earlier life of this one. A 409 (*HeldError) says the grant was not
// current: it had expired, or was released or superseded already. It is
// retried only when the first attempt certainly did nothing.
func (c *Client) Release(ctx context.Context, name, holder string, token uint64) error {
	return c.ReleaseWithKey(ctx, name, holder, token, "")
}

// ReleaseWithKey is Release for a cluster started with --grant-secret,
// which gives every grant a secret key (Lease.Key) and ends a grant only
// for whoever sends it; without the key such a cluster answers 403
// (ErrDenied).
func (c *Client) ReleaseWithKey(ctx context.Context, name, holder string, token uint64, key string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := checkHolder(holder); err != nil {
		return err
	}
	path := fmt.Sprintf("/v1/locks/%s?holder=%s&token=%d", name, url.QueryEscape(holder), token)
	if key != "" {
		path += "&key=" + url.QueryEscape(key)
	}
	return c.endGrant(ctx, name, path)
}

// endGrant sends a DELETE that ends a grant, retried only when the first
// attempt certainly did nothing.
func (c *Client) endGrant(ctx context.Context, name, path string) error {
	req := request{method: http.MethodDelete, path: path, attemptTimeout: c.attemptTimeout}
	a, err := c.send(ctx, req, retryIfNotApplied, c.now()+c.callTimeout)
	if err != nil {
		return err
	}
	switch a.status {
	case http.StatusNoContent:
		return nil
	case http.StatusConflict:
		return conflict(name, a)
	default:
		return refusal(a)
	}
}

// ForceRelease ends grant token of name whoever holds it: an operator's
// act, which needs a token with admin on the name where the cluster checks
// tokens. The name stays in its lock-delay for the grant's ttl and
// lock-delay, so the forced-out holder, whose renewals are refused from
// now on, has stopped before anyone else holds it.
func (c *Client) ForceRelease(ctx context.Context, name string, token uint64) error {
	if err := checkName(name); err != nil {
		return err
	}
	return c.endGrant(ctx, name, fmt.Sprintf("/v1/locks/%s?token=%d&force=true", name, token))
}

// Get reads who holds name: a linearizable read, reflecting every operation
// that completed before it began, whichever node serves it. It never
// extends a lease.
func (c *Client) Get(ctx context.Context, name string) (State, error) {
	if err := checkName(name); err != nil {
		return State{}, err
	}
	req := request{method: http.MethodGet, path: "/v1/locks/" + name, attemptTimeout: c.attemptTimeout}
	a, err := c.send(ctx, req, retryAlways, c.now()+c.callTimeout)
	if err != nil {
		return State{}, err
	}
	switch a.status {
	case http.StatusOK, http.StatusNotFound:
		return toState(a)
	default:
		return State{}, refusal(a)
	}
}
