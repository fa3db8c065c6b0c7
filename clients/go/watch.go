package tenure

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

const (
	// statesBuffered is how many states wait for a slow reader before the
	// watch waits on it.
	statesBuffered = 16
	// maxLineBytes: a longer line is not from a tenure node.
	maxLineBytes   = 64 << 10
	reconnectFirst = 50 * time.Millisecond
	reconnectMax   = 2 * time.Second
	// silenceLimit: three heartbeats missed.
	silenceLimit = 15 * time.Second
)

// Watch follows the states of name (GET /v1/locks/{name}?watch=true): the
// current state at once, then one at every change of state, holder or
// token (renewals change neither), and the same state again after 5 s of
// quiet (the node's heartbeat). When a node's stream ends, or stays silent
// for 15 s, it
// reconnects to the next node, and the first state after a reconnection is
// the current one again, so a reader may see one state twice in a row. A
// State of StateUnavailable says that a node lost its quorum, or that no
// node could be reached; the watch keeps trying.
//
// The channel is closed when ctx ends, or after a node refuses the watch
// (a 4xx, not retried on any node; the last State is then
// StateUnavailable with the node's reason, and its Err is a *DeniedError
// for a 401 or 403, an *InvalidError otherwise).
func (c *Client) Watch(ctx context.Context, name string) (<-chan State, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	out := make(chan State, statesBuffered)
	go c.follow(ctx, name, out)
	return out, nil
}

func (c *Client) follow(ctx context.Context, name string, out chan<- State) {
	defer close(out)
	node := int(c.preferred.Load())
	backoff := reconnectFirst
	// Whether the reader was told that no node could be reached, since
	// lines last flowed: once per outage, not once per retry.
	toldUnreachable := false
	send := func(s State) bool {
		select {
		case out <- s:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for ctx.Err() == nil {
		endpoint := c.endpoints[node%len(c.endpoints)]
		flowed, refused, err := c.stream(ctx, endpoint, name, send)
		if ctx.Err() != nil {
			return
		}
		if flowed {
			// Lines flowed: the next failure starts a fresh backoff.
			backoff = reconnectFirst
			toldUnreachable = false
		}
		if refused != nil {
			send(*refused)
			return
		}
		if err != nil && !toldUnreachable {
			// Said as a watch line, as a node says it lost its quorum:
			// the reader keeps reading, and knows why nothing comes.
			toldUnreachable = true
			if !send(State{State: StateUnavailable, Error: fmt.Sprintf("%s: %v; trying again", endpoint, err)}) {
				return
			}
		}
		// The stream ended or never started: another node, after a pause.
		node++
		if !pause(ctx, jittered(backoff)) {
			return
		}
		backoff *= 2
		if backoff > reconnectMax {
			backoff = reconnectMax
		}
	}
}

// stream reads one node's watch stream until it ends. flowed: at least one
// state was passed on. refused: the node refused the watch (4xx).
func (c *Client) stream(ctx context.Context, endpoint, name string, send func(State) bool) (flowed bool, refused *State, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, endpoint+"/v1/locks/"+name+"?watch=true", nil)
	if err != nil {
		return false, nil, err
	}
	c.authorize(req)
	// The head must come within an attempt's time; the body may then
	// stream for as long as the watch lasts.
	headTimer := time.AfterFunc(c.attemptTimeout, cancel)
	resp, err := c.http.Do(req)
	if !headTimer.Stop() && err == nil {
		resp.Body.Close()
		return false, nil, fmt.Errorf("no answer within %v", c.attemptTimeout)
	}
	if err != nil {
		return false, nil, classify(err, sctx, c.attemptTimeout)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 && resp.StatusCode < 500 {
		var body wire
		_ = json.NewDecoder(http.MaxBytesReader(nil, resp.Body, maxAnswerBytes)).Decode(&body)
		body.Error = c.redact(body.Error)
		refusal := refusal(&answer{status: resp.StatusCode, body: body, endpoint: endpoint})
		msg := body.Error
		if msg == "" {
			msg = fmt.Sprintf("refused with status %d", resp.StatusCode)
		}
		return false, &State{State: StateUnavailable, Error: msg, Err: refusal}, nil
	}
	if resp.StatusCode != http.StatusOK {
		return false, nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	// A node repeats the state at least every 5 s (a heartbeat): a stream
	// silent for longer than silenceLimit is from a node that froze or was
	// cut off, and is left for the next node.
	silence := time.AfterFunc(silenceLimit, cancel)
	defer silence.Stop()
	lines := bufio.NewScanner(resp.Body)
	lines.Buffer(make([]byte, 0, 1024), maxLineBytes)
	for lines.Scan() {
		silence.Reset(silenceLimit)
		a := answer{status: resp.StatusCode, endpoint: endpoint}
		if json.Unmarshal(lines.Bytes(), &a.body) != nil {
			continue
		}
		s, perr := toState(&a)
		if perr != nil && a.body.State != StateUnavailable {
			continue
		}
		// A slow reader is no silent node: no limit while it reads.
		silence.Stop()
		if !send(s) {
			return flowed, nil, nil
		}
		silence.Reset(silenceLimit)
		flowed = true
	}
	return flowed, nil, lines.Err()
}

func (e *attemptError) Error() string { return e.message }
