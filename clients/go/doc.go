// Package tenure is the Go client of tenure, a leader-election and
// distributed lease service: locks with fencing tokens and leases that stay
// safe without synchronised clocks.
//
//	c, err := tenure.New(tenure.WithEndpoints("http://10.0.0.1:7400", "http://10.0.0.2:7400"))
//	l, err := c.Acquire(ctx, "nightly", tenure.TTL(10*time.Second))
//	if errors.Is(err, tenure.ErrHeld) { ... }
//	defer l.Release(context.Background())
//	select {
//	case <-l.Done(): // lost: stop acting as holder
//	case <-work(l.Token()):
//	}
//
// Elections follow etcd's concurrency package: c.Election(name) gives
// Campaign, Resign, Leader and Observe.
//
// # The holder's deadline
//
// Everything rests on one rule (assumption A5 of docs/safety.md): act as
// holder only until sent + ttl·(1−2ρ) − margin, counted on this process's
// own clock from the moment it SENT the request that won (or last renewed)
// the grant. ρ is the cluster's drift bound, max_drift_ppm/1e6, from the
// grant itself. The client computes that deadline itself and never asks
// the cluster whether it still holds a lease, so Lease.Done closes on time
// even when every node is unreachable or frozen.
//
// A grant won at the end of a long poll counts from the poll's send time;
// when that leaves less than two thirds of a fresh lease, Acquire renews
// it at once and counts from the renewal. A Lease renews itself about
// every ttl/3, counted from the last successful renewal's send time,
// retrying across nodes until its deadline; a renewal refused with 409
// loses the lease at once.
//
// # Clocks
//
// On Linux deadlines are counted on CLOCK_BOOTTIME, which keeps running
// while the machine is suspended. Go's own monotonic clock (behind
// time.Now and every timer) stops during a suspend, so a holder counting
// on it would wake up still trusting a lease the cluster has since given
// away. Waits therefore never trust a timer for more than 100 ms: a holder
// that slept through its deadline sees Valid() false the moment it resumes
// and Done closes within 100 ms. On other systems the client falls back to
// Go's monotonic clock, which may stop during a suspend there.
//
// # Failover and retries
//
// Any node serves any request. A Client sends to the last node that
// answered and moves to the next on a refused connection, a timeout (4 s an
// attempt, longer for a long poll) or a 503; after a full round of
// failures it backs off (50 ms doubling to 1 s, full jitter). A call gives
// up after 10 s. Reads, renewals and acquires are retried after any
// failure: a renewal names its token, and a repeated acquire by the same
// holder supersedes an unknown earlier grant with a higher token. A release
// is retried only when the first attempt certainly did nothing (no
// connection, or a 503 with outcome_unknown false), so that its 409 always
// tells the truth about the caller's grant.
//
// # Authentication
//
// A cluster started with --tokens wants a bearer token: WithToken sets it
// (by default, the trimmed contents of the file named by
// TENURE_TOKEN_FILE), and every request, watches included, sends it as
// "Authorization: Bearer TOKEN". A 401 or 403 is a *DeniedError, matching
// ErrDenied, returned at once and never retried on any node. The token is
// never printed.
//
// # Errors
//
// Match errors with errors.Is against ErrHeld, ErrUnavailable, ErrInvalid,
// ErrDenied, ErrLost and ErrProtocol, and take details with errors.As:
// *HeldError (who holds the name, its token, how long), *UnavailableError
// (whether the outcome is unknown), *InvalidError (the field to fix),
// *DeniedError (401 or 403), *LostError (why) and *ProtocolError.
package tenure
