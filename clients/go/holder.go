package tenure

import (
	"fmt"
	"os"
	"strings"
)

// DefaultHolderID is a holder id unique to this process and call:
// {hostname}:{pid}:{random}. The random part keeps two processes apart even
// when a pid is reused, or two containers share a hostname and pid. It is
// readable by an operator debugging a stuck lock (409 bodies name the
// holder).
func DefaultHolderID() string {
	host, _ := os.Hostname()
	var b strings.Builder
	for _, r := range host {
		if r > ' ' && r <= '~' && b.Len() < 64 {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		b.WriteString("host")
	}
	return fmt.Sprintf("%s:%d:%08x", b.String(), os.Getpid(), random32())
}
