//go:build linux

package tenure

import (
	"syscall"
	"time"
	"unsafe"
)

// clockBoottime is CLOCK_BOOTTIME from <linux/time.h>; the syscall package
// does not name it.
const clockBoottime = 7

// bootTime reads CLOCK_BOOTTIME, which counts time spent suspended, unlike
// the CLOCK_MONOTONIC readings behind time.Now. A raw system call (no vDSO)
// costs well under a microsecond; deadlines are read a few times a second.
func bootTime() time.Duration {
	var ts syscall.Timespec
	_, _, errno := syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, clockBoottime, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		// Every Linux since 2.6.39 has it; a sandbox that forbids the call
		// gets the monotonic clock rather than a crash.
		return monotonic()
	}
	return time.Duration(ts.Nano())
}
