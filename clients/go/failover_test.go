package tenure

// The client against stub nodes: which failures are retried, and deadlines
// that hold when no node answers. The stubs answer with canned HTTP, so
// each case is exact; the scenario suite runs the real server.

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

type stub struct {
	url      string
	requests atomic.Int32
}

// newStub answers each request with answer(n), n counting from 0; a
// status of 0 never answers (until the client gives up).
func newStub(t *testing.T, answer func(n int32) (int, string)) *stub {
	s := &stub{}
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read the body: only then does the server notice a client that
		// hangs up, and end r.Context().
		_, _ = io.Copy(io.Discard, r.Body)
		status, body := answer(s.requests.Add(1) - 1)
		if status == 0 {
			select {
			case <-r.Context().Done():
			case <-stop:
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(func() {
		close(stop)
		srv.Close()
	})
	s.url = srv.URL
	return s
}

func always(status int, body string) func(int32) (int, string) {
	return func(int32) (int, string) { return status, body }
}

// deadEndpoint is an address where nothing listens: bound, then released.
func deadEndpoint(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	l.Close()
	return url
}

const (
	heldBody    = `{"state":"held","holder":"a","token":3,"remaining_ms":900,"ttl_ms":1000}`
	unknownBody = `{"error":"no quorum","outcome_unknown":true}`
	knownBody   = `{"error":"overloaded","outcome_unknown":false}`
)

func TestAReadFailsOverFromADeadNodeAndThenGoesStraightToTheLiveOne(t *testing.T) {
	live := newStub(t, always(200, heldBody))
	c := newClient(t, []string{deadEndpoint(t), live.url})
	ctx := testContext(t)
	for i := 0; i < 2; i++ {
		if s, err := c.Get(ctx, "x"); err != nil || s.Holder != "a" || s.Token != 3 {
			t.Fatalf("read %d: %+v, %v", i, s, err)
		}
	}
	if n := live.requests.Load(); n != 2 {
		t.Fatalf("%d requests to the live node", n)
	}
}

func TestAnAcquireWithAnUnknownOutcomeIsRetriedOnAnotherNode(t *testing.T) {
	failing := newStub(t, always(503, unknownBody))
	granting := newStub(t, always(201, `{"token":7,"holder":"me","ttl_ms":1000}`))
	c := newClient(t, []string{failing.url, granting.url})
	l, err := c.TryAcquire(testContext(t), "x", Holder("me"), TTL(time.Second))
	if err != nil || l.Token() != 7 {
		t.Fatalf("%v", err)
	}
	l.lose(LostReleased, nil)
	if n := failing.requests.Load(); n != 1 {
		t.Fatalf("%d requests to the failing node", n)
	}
}

func TestAReleaseWithAnUnknownOutcomeIsNotRetried(t *testing.T) {
	failing := newStub(t, always(503, unknownBody))
	other := newStub(t, always(204, ""))
	c := newClient(t, []string{failing.url, other.url})
	err := c.Release(testContext(t), "x", "me", 7)
	var un *UnavailableError
	if !errors.As(err, &un) || !un.OutcomeUnknown {
		t.Fatalf("%v", err)
	}
	if n := other.requests.Load(); n != 0 {
		t.Fatalf("the release was retried (%d)", n)
	}
}

func TestAReleaseThatCertainlyDidNothingIsRetriedOnAnotherNode(t *testing.T) {
	failing := newStub(t, always(503, knownBody))
	other := newStub(t, always(204, ""))
	c := newClient(t, []string{failing.url, other.url})
	if err := c.Release(testContext(t), "x", "me", 7); err != nil {
		t.Fatal(err)
	}
	if n := other.requests.Load(); n != 1 {
		t.Fatalf("%d requests to the other node", n)
	}
}

func TestACallEndsByItsDeadlineWhenNoNodeAnswers(t *testing.T) {
	silent := newStub(t, always(0, ""))
	c := newClient(t, []string{silent.url, deadEndpoint(t)}, WithTimeouts(200*time.Millisecond, 500*time.Millisecond))
	started := time.Now()
	_, err := c.Get(testContext(t), "x")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("%v", err)
	}
	if d := time.Since(started); d > 800*time.Millisecond {
		t.Fatalf("took %v", d)
	}
}

func TestACancelledContextEndsACall(t *testing.T) {
	silent := newStub(t, always(0, ""))
	c := newClient(t, []string{silent.url})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Get(ctx, "x")
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%v", err)
	}
}

func TestDoneClosesAtTheLocalDeadlineWhenRenewalsGetNoAnswer(t *testing.T) {
	node := newStub(t, func(n int32) (int, string) {
		if n == 0 {
			return 201, `{"token":1,"holder":"me","ttl_ms":600}`
		}
		return 0, "" // the cluster is unreachable from now on
	})
	c := newClient(t, []string{node.url}, WithTimeouts(150*time.Millisecond, 2*time.Second))
	before := time.Now()
	l, err := c.TryAcquire(testContext(t), "x", Holder("me"), TTL(600*time.Millisecond), Margin(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	<-l.Done()
	// 600 ms · 0.998 − 100 ms = 498.8 ms after the send.
	elapsed := time.Since(before)
	if !errors.Is(l.Err(), ErrLost) || l.Valid() || elapsed < 490*time.Millisecond || elapsed >= 600*time.Millisecond {
		t.Fatalf("lost after %v: %v", elapsed, l.Err())
	}
	if node.requests.Load() < 2 {
		t.Fatal("no renewal was attempted")
	}
}

func TestARefusedRenewalLosesTheLeaseAtOnce(t *testing.T) {
	node := newStub(t, func(n int32) (int, string) {
		if n == 0 {
			return 201, `{"token":1,"holder":"me","ttl_ms":3000}`
		}
		return 409, `{"state":"free","token":1,"error":"grant 1 of me is no longer current"}`
	})
	c := newClient(t, []string{node.url})
	l, err := c.TryAcquire(testContext(t), "x", Holder("me"), TTL(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	<-l.Done()
	var lost *LostError
	if !errors.As(l.Err(), &lost) || lost.Reason != LostRefused || lost.State == nil || lost.State.State != StateFree {
		t.Fatalf("%v", l.Err())
	}
	// The first renewal is at ttl/3 = 1 s; the deadline is ~2.9 s.
	if d := time.Since(started); d > 1500*time.Millisecond {
		t.Fatalf("lost after %v", d)
	}
}

// suspendable is BootTime that a test moves forward as a suspend would,
// while every timer of the process stands still.
type suspendable struct{ skipped atomic.Int64 }

func (s *suspendable) Now() time.Duration { return bootTime() + time.Duration(s.skipped.Load()) }

func TestAHolderSuspendedPastItsDeadlineKnowsOnResume(t *testing.T) {
	node := newStub(t, func(n int32) (int, string) {
		if n == 0 {
			return 201, `{"token":1,"holder":"me","ttl_ms":3000}`
		}
		return 200, `{"token":1,"holder":"me","ttl_ms":3000}`
	})
	clock := &suspendable{}
	c := newClient(t, []string{node.url}, WithClock(clock))
	l, err := c.TryAcquire(testContext(t), "x", Holder("me"), TTL(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	clock.skipped.Add(int64(4 * time.Second))
	// At once, without waiting for any timer or any node:
	if l.Valid() {
		t.Fatal("valid after a suspend past the deadline")
	}
	resumed := time.Now()
	<-l.Done()
	if d := time.Since(resumed); d > lookEvery+400*time.Millisecond {
		t.Fatalf("noticed %v after the resume", d)
	}
	var lost *LostError
	if !errors.As(l.Err(), &lost) || lost.Reason != LostExpired {
		t.Fatalf("%v", l.Err())
	}
}

func TestAWatchSaysWhenNoNodeCanBeReached(t *testing.T) {
	c := newClient(t, []string{deadEndpoint(t)})
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	states, err := c.Watch(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-states:
		if s.State != StateUnavailable {
			t.Fatalf("%+v", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing said")
	}
}
