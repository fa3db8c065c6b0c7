package tenure

import "time"

// defaultDriftPPM is the cluster's default bound on clock drift (ρ =
// 0.001), used when a grant does not say which bound the cluster runs with.
const defaultDriftPPM = 1000

// maxDriftPPM is the largest bound a cluster accepts; a grant claiming more
// is not from a tenure node, and the default is used instead.
const maxDriftPPM = 100000

// holderDeadline is assumption A5 of docs/safety.md: the last reading of
// the holder's clock at which the holder of a grant of ttl, won by a
// request sent at sent, may still act as holder:
//
//	sent + ttl·(1−2ρ) − margin,   ρ = driftPPM / 1e6
//
// Counted from the SEND time, not the reply: the cluster may start the
// lease's clock any time after the request left, and the holder cannot know
// when. ttl·(1−2ρ) is rounded down to whole microseconds, as the server's
// core does, so the deadline is never later than the exact one. A margin
// larger than the usable ttl gives sent itself: a grant that cannot be used.
func holderDeadline(sent, ttl time.Duration, driftPPM uint32, margin time.Duration) time.Duration {
	if driftPPM > maxDriftPPM {
		driftPPM = defaultDriftPPM
	}
	micros := uint64(ttl / time.Microsecond)
	// At most 86 400 000 000 µs times 1 000 000: fits in a uint64.
	usable := time.Duration(micros*(1000000-2*uint64(driftPPM))/1000000) * time.Microsecond
	if margin < 0 {
		margin = 0
	}
	if margin >= usable {
		return sent
	}
	return sent + usable - margin
}

// mostOfTheLeaseLeft says whether a grant won by a request sent at sent
// still leaves, at now, at least two thirds of what a renewal sent now
// would give. If not (a long poll that waited), the holder renews before it
// trusts the grant, and counts from the renewal's send time.
func mostOfTheLeaseLeft(sent, now, ttl time.Duration, driftPPM uint32, margin time.Duration) bool {
	left := holderDeadline(sent, ttl, driftPPM, margin) - now
	if left < 0 {
		left = 0
	}
	fresh := holderDeadline(now, ttl, driftPPM, margin) - now
	return left*3 >= fresh*2
}

// ceilMillis is d in whole milliseconds, rounded up: a wait sent to the
// server never ends before the one asked for.
func ceilMillis(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}
