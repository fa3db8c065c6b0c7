package tenure

// The scenario suite, against real tenure processes (the same scenarios
// as the Rust client's): grant, conflict, wait, renewal across a node
// kill, loss on a frozen cluster, resignation and observation.

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"
)

// testTimeout bounds every call and wait of a scenario.
const testTimeout = 30 * time.Second

func newClient(t *testing.T, urls []string, opts ...Option) *Client {
	t.Helper()
	c, err := New(append([]Option{WithEndpoints(urls...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond (a read of the cluster, say) until it holds, for at
// most within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	until := time.Now().Add(within)
	for !cond() {
		if time.Now().After(until) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waiters is how many long polls the cluster has queued for name.
func waiters(ctx context.Context, t *testing.T, c *Client, name string) int {
	s, err := c.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return s.Waiters
}

func TestGrantThenRelease(t *testing.T) {
	c := newClient(t, startDev(t))
	ctx := testContext(t)
	l, err := c.Acquire(ctx, "nightly", TTL(5*time.Second), Holder("web-1"))
	if err != nil {
		t.Fatal(err)
	}
	if l.Token() == 0 || !l.Valid() || l.Err() != nil || l.Holder() != "web-1" || l.TTL() != 5*time.Second {
		t.Fatalf("a fresh grant: token %d valid %v err %v holder %s ttl %v", l.Token(), l.Valid(), l.Err(), l.Holder(), l.TTL())
	}
	if left := time.Until(l.Deadline()); left <= 4*time.Second || left > 5*time.Second {
		t.Fatalf("deadline %v away, want a little under the ttl", left)
	}
	s, err := c.Get(ctx, "nightly")
	if err != nil || s.State != StateHeld || s.Holder != "web-1" || s.Token != l.Token() {
		t.Fatalf("read %+v, %v", s, err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Done():
	default:
		t.Fatal("Done still open after Release")
	}
	var lost *LostError
	if !errors.As(l.Err(), &lost) || lost.Reason != LostReleased || !errors.Is(l.Err(), ErrLost) {
		t.Fatalf("Err after Release: %v", l.Err())
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("a second Release: %v", err)
	}
	s, err = c.Get(ctx, "nightly")
	if err != nil || s.State != StateFree || s.Token != l.Token() {
		t.Fatalf("read after release %+v, %v", s, err)
	}
}

func TestConflictNamesHolderAndToken(t *testing.T) {
	c := newClient(t, startDev(t))
	ctx := testContext(t)
	l, err := c.TryAcquire(ctx, "report", Holder("web-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(ctx)
	_, err = c.TryAcquire(ctx, "report", Holder("web-2"))
	var held *HeldError
	if !errors.Is(err, ErrHeld) || !errors.As(err, &held) {
		t.Fatalf("second TryAcquire: %v", err)
	}
	if held.Holder != "web-1" || held.Token != l.Token() || held.Remaining <= 0 || held.State.State != StateHeld {
		t.Fatalf("conflict %+v, want web-1 with token %d", held, l.Token())
	}
}

func TestWaiterGetsTheLockWhenTheHolderReleases(t *testing.T) {
	c := newClient(t, startDev(t))
	ctx := testContext(t)
	first, err := c.Acquire(ctx, "queue", Holder("web-1"))
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		l   *Lease
		err error
	}
	got := make(chan result, 1)
	go func() {
		l, err := c.Acquire(ctx, "queue", Holder("web-2"), Wait(20*time.Second))
		got <- result{l, err}
	}()
	waitFor(t, 10*time.Second, "the second locker queued", func() bool { return waiters(ctx, t, c, "queue") == 1 })
	released := time.Now()
	if err := first.Release(ctx); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-got:
	case <-time.After(testTimeout):
		t.Fatal("the waiter never got the lock")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.l.Release(ctx)
	if r.l.Holder() != "web-2" || r.l.Token() <= first.Token() || !r.l.Valid() {
		t.Fatalf("waiter got %s token %d (first had %d)", r.l.Holder(), r.l.Token(), first.Token())
	}
	if d := time.Since(released); d > 5*time.Second {
		t.Fatalf("handed over %v after the release", d)
	}
}

func TestAWaitThatRunsOutIsHeld(t *testing.T) {
	c := newClient(t, startDev(t))
	ctx := testContext(t)
	l, err := c.Acquire(ctx, "busy", Holder("web-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(ctx)

	started := time.Now()
	_, err = c.Acquire(ctx, "busy", Holder("web-2"), Wait(300*time.Millisecond))
	var held *HeldError
	if !errors.As(err, &held) || !errors.Is(err, ErrHeld) || held.Holder != "web-1" {
		t.Fatalf("a wait that runs out: %v", err)
	}
	if held.Waited < 300*time.Millisecond || time.Since(started) > 3*time.Second {
		t.Fatalf("waited %v (reported %v), want about 300 ms", time.Since(started), held.Waited)
	}

	// A context deadline bounds the wait the same way. Acquire keeps the
	// last quarter of it (at most 500 ms) for the answer to the wait's
	// last try, which is a write: 2 s leaves that the whole 500 ms, room
	// for an fsync on a disk that is busy flushing something else.
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = c.Acquire(short, "busy", Holder("web-2"))
	if !errors.Is(err, ErrHeld) {
		t.Fatalf("a wait bounded by its context: %v", err)
	}
}

func TestRenewsThroughAnotherNodeWhenItsNodeIsKilled(t *testing.T) {
	cl := startCluster(t)
	c := newClient(t, cl.urls)
	ctx := testContext(t)
	const ttl = 2 * time.Second
	l, err := c.Acquire(ctx, "failover", TTL(ttl), Holder("web-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(ctx)
	l.mu.Lock()
	granted := l.lastSent
	l.mu.Unlock()
	talking := int(c.preferred.Load())
	cl.nodes[talking].signal(t, syscall.SIGKILL)

	// Past twice the ttl on the holder's clock, the lease must still hold.
	until := granted + 2*ttl
	timer := time.NewTimer(until - c.now())
	defer timer.Stop()
	select {
	case <-l.Done():
		t.Fatalf("lost after the node was killed: %v", l.Err())
	case <-timer.C:
	}
	l.mu.Lock()
	renewed := l.lastSent
	l.mu.Unlock()
	if !l.Valid() || renewed < granted+ttl {
		t.Fatalf("valid %v; last renewal sent %v after the grant", l.Valid(), renewed-granted)
	}
	if now := int(c.preferred.Load()); now == talking {
		t.Fatalf("still talking to the killed node %d", now)
	}
	s, err := c.Get(ctx, "failover")
	if err != nil || s.State != StateHeld || s.Holder != "web-1" || s.Token != l.Token() {
		t.Fatalf("read %+v, %v; want web-1 with the same token %d", s, err, l.Token())
	}
}

func TestLostOnTheHoldersClockWhenTheClusterFreezes(t *testing.T) {
	cl := startCluster(t)
	c := newClient(t, cl.urls)
	ctx := testContext(t)
	const ttl, margin = 2 * time.Second, 300 * time.Millisecond
	l, err := c.Acquire(ctx, "frozen", TTL(ttl), Margin(margin), Holder("web-1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range cl.nodes {
		n.signal(t, syscall.SIGSTOP) // the cleanup continues and kills them
	}
	l.mu.Lock()
	sent, deadline := l.lastSent, l.deadline
	l.mu.Unlock()

	timer := time.NewTimer(ttl + 5*time.Second)
	defer timer.Stop()
	select {
	case <-l.Done():
	case <-timer.C:
		t.Fatal("Done never closed with every node frozen")
	}
	lostAt := c.now()
	var lost *LostError
	if !errors.As(l.Err(), &lost) || lost.Reason != LostExpired || l.Valid() {
		t.Fatalf("Err %v, valid %v", l.Err(), l.Valid())
	}
	// On one clock, the holder's: not before its deadline, and before the
	// cluster could count the lease over (sent + ttl), with at least half
	// the margin still in hand.
	if lostAt < deadline {
		t.Fatalf("lost %v before its deadline", deadline-lostAt)
	}
	if lostAt >= sent+ttl || lostAt > deadline+margin/2 {
		t.Fatalf("lost %v after the send, deadline %v after it, ttl %v", lostAt-sent, deadline-sent, ttl)
	}
}

func TestResignHandsLeadershipOverAtOnce(t *testing.T) {
	urls := startDev(t)
	c1, c2 := newClient(t, urls), newClient(t, urls)
	ctx := testContext(t)
	const ttl = 10 * time.Second
	e1, e2 := c1.Election("scheduler", TTL(ttl)), c2.Election("scheduler", TTL(ttl))
	if err := e1.Campaign(ctx, "web-1"); err != nil {
		t.Fatal(err)
	}
	if !e1.IsLeader() || e1.Token() == 0 {
		t.Fatal("web-1 campaigned but does not lead")
	}
	first := e1.Token()
	won := make(chan error, 1)
	go func() { won <- e2.Campaign(ctx, "web-2") }()
	waitFor(t, 10*time.Second, "web-2 campaigning", func() bool { return waiters(ctx, t, c1, "scheduler") == 1 })

	resigned := time.Now()
	if err := e1.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-e1.Done():
	default:
		t.Fatal("web-1 still leads after resigning")
	}
	select {
	case err := <-won:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(testTimeout):
		t.Fatal("web-2 never became leader")
	}
	if d := time.Since(resigned); d > ttl/3 {
		t.Fatalf("handed over %v after the resignation (ttl %v)", d, ttl)
	}
	leader, err := e1.Leader(ctx)
	if err != nil || leader.ID != "web-2" || leader.Token <= first || leader.Token != e2.Token() {
		t.Fatalf("leader %+v, %v", leader, err)
	}
	if err := e2.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e2.Leader(ctx); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("leader after both resigned: %v", err)
	}
}

func TestObserveReportsTheLeaderAndItsChanges(t *testing.T) {
	urls := startDev(t)
	c := newClient(t, urls)
	ctx := testContext(t)
	watching, stop := context.WithCancel(ctx)
	defer stop()
	changes := c.Election("observed").Observe(watching)
	next := func(what string) Leader {
		t.Helper()
		select {
		case l, ok := <-changes:
			if !ok {
				t.Fatalf("%s: the channel closed", what)
			}
			return l
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no report", what)
			return Leader{}
		}
	}
	if l := next("at first"); l != (Leader{}) {
		t.Fatalf("at first %+v, want nobody", l)
	}
	e1 := c.Election("observed", TTL(5*time.Second))
	if err := e1.Campaign(ctx, "web-1"); err != nil {
		t.Fatal(err)
	}
	if l := next("after web-1 campaigned"); l.ID != "web-1" || l.Token != e1.Token() {
		t.Fatalf("after web-1 campaigned: %+v", l)
	}
	if err := e1.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	e2 := c.Election("observed", TTL(5*time.Second))
	if err := e2.Campaign(ctx, "web-2"); err != nil {
		t.Fatal(err)
	}
	defer e2.Resign(ctx)
	l := next("after the handover")
	if l == (Leader{}) {
		l = next("after nobody led") // a resignation may show nobody in between
	}
	if l.ID != "web-2" || l.Token != e2.Token() {
		t.Fatalf("after the handover: %+v", l)
	}
	stop()
	for range changes {
	}
}

func TestAGrantWonAfterALongWaitIsRenewedBeforeItIsHandedOut(t *testing.T) {
	c := newClient(t, startDev(t))
	ctx := testContext(t)
	const ttl = 1500 * time.Millisecond
	// A holder that never renews: its lease expires and passes to the
	// waiter, whose poll was sent about a ttl before the grant came.
	if _, state, err := c.acquireOnce(ctx, "expiring", "gone", ttl, 0, 0); err != nil || state != nil {
		t.Fatalf("%v, %v", state, err)
	}
	polled := c.now()
	l, err := c.Acquire(ctx, "expiring", TTL(ttl), Holder("web-2"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(ctx)
	returned := c.now()
	l.mu.Lock()
	sent, deadline := l.lastSent, l.deadline
	l.mu.Unlock()
	if returned-polled < ttl/2 {
		t.Fatalf("granted after %v, before the first lease could expire", returned-polled)
	}
	// Counted from the renewal sent after the grant, not from the poll.
	if sent < polled+ttl/2 || deadline-returned < ttl/2 {
		t.Fatalf("counted from %v after the poll; %v left on return", sent-polled, deadline-returned)
	}
}
