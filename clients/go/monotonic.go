package tenure

import "time"

// origin anchors monotonic readings: time.Since uses the monotonic part of
// both readings, never the wall clock.
var origin = time.Now()

func monotonic() time.Duration { return time.Since(origin) }
