//go:build !linux

package tenure

import "time"

// bootTime is Go's monotonic clock where CLOCK_BOOTTIME does not exist.
// It may stop while the machine is suspended (see BootTime).
func bootTime() time.Duration { return monotonic() }
