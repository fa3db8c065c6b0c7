package tenure

// A harness for the scenario tests: real tenure processes on loopback
// ports chosen by the OS, in temporary data folders. Every process is
// stopped by its pid in t.Cleanup, also when a test fails.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startTimeout is how long a node may take to print its first line.
const startTimeout = 30 * time.Second

// tenureBin is the server binary: TENURE_BIN, else target/debug/tenure
// at the repository's root (two folders up from this package).
func tenureBin(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("TENURE_BIN"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("TENURE_BIN=%s: %v", bin, err)
		}
		return bin
	}
	bin, err := filepath.Abs(filepath.Join("..", "..", "target", "debug", "tenure"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no tenure binary at %s (build it with cargo, or set TENURE_BIN)", bin)
	}
	return bin
}

// proc is one running tenure process.
type proc struct {
	cmd *exec.Cmd
	// banner is the first line it printed.
	banner string
}

// pid is the process's id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// signal sends sig to the process (by its pid).
func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(p.pid(), sig); err != nil {
		t.Fatalf("kill -%d %d: %v", sig, p.pid(), err)
	}
}

// spawn starts the binary with args, waits (bounded) for its first line of
// output and registers its end (SIGCONT, in case a test stopped it, then
// SIGKILL and reap) with t.Cleanup. An error when it exits first.
func spawn(t *testing.T, args []string, logPath string) (*proc, error) {
	t.Helper()
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(tenureBin(t), args...)
	cmd.Stderr = log
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		log.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	p := &proc{cmd: cmd}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = syscall.Kill(p.pid(), syscall.SIGCONT)
		_ = syscall.Kill(p.pid(), syscall.SIGKILL)
		_ = cmd.Wait()
		log.Close()
	}
	t.Cleanup(stop)
	first := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		first <- strings.TrimSpace(line)
		// Keep draining, so the process never blocks on a full pipe.
		_, _ = io.Copy(io.Discard, r)
	}()
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case line := <-first:
		if line == "" {
			stop()
			text, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("tenure %s did not start: %s", args[0], text)
		}
		p.banner = line
		return p, nil
	case <-timer.C:
		stop()
		return nil, fmt.Errorf("tenure %s printed nothing within %v", args[0], startTimeout)
	}
}

// freePorts are ports that were free a moment ago: bound to port 0, read,
// released.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// cluster is three `tenure server` processes.
type cluster struct {
	nodes []*proc
	urls  []string
}

// startCluster starts three nodes. A port freed by freePorts may be taken
// by someone else before the node binds it: rare, and then the whole start
// is retried.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	var err error
	for try := 0; try < 5; try++ {
		var c *cluster
		if c, err = tryCluster(t); err == nil {
			return c
		}
	}
	t.Fatalf("could not start a cluster: %v", err)
	return nil
}

func tryCluster(t *testing.T) (*cluster, error) {
	dir := t.TempDir()
	ports := freePorts(t, 6)
	var peers []string
	for id := 1; id <= 3; id++ {
		peers = append(peers, fmt.Sprintf("%d=127.0.0.1:%d", id, ports[2+id]))
	}
	c := &cluster{}
	for id := 1; id <= 3; id++ {
		args := []string{
			"server", "--id", fmt.Sprint(id),
			"--data-dir", filepath.Join(dir, fmt.Sprintf("node-%d", id)),
			"--http", fmt.Sprintf("127.0.0.1:%d", ports[id-1]),
			"--peer-listen", fmt.Sprintf("127.0.0.1:%d", ports[2+id]),
			"--peers", strings.Join(peers, ","),
			// These tests are of the client: loopback peers in plain TCP.
			"--insecure-peers",
		}
		p, err := spawn(t, args, filepath.Join(dir, fmt.Sprintf("node-%d.log", id)))
		if err != nil {
			// The nodes already started are stopped by their cleanups.
			for _, started := range c.nodes {
				_ = syscall.Kill(started.pid(), syscall.SIGKILL)
			}
			return nil, err
		}
		c.nodes = append(c.nodes, p)
		c.urls = append(c.urls, fmt.Sprintf("http://127.0.0.1:%d", ports[id-1]))
	}
	return c, nil
}

// startDev starts `tenure dev` (three nodes in one process, on ports the
// OS chooses) and returns its nodes' URLs, read from its first lines.
// extra are more arguments (--tokens FILE, say).
func startDev(t *testing.T, extra ...string) []string {
	t.Helper()
	return startDevIn(t, t.TempDir(), extra...)
}

// startDevIn is startDev with its data in dir (dir/tls holds the dev CA).
func startDevIn(t *testing.T, dir string, extra ...string) []string {
	t.Helper()
	args := append([]string{"dev", "--http-port", "0", "--data-dir", dir}, extra...)
	p, err := spawn(t, args, filepath.Join(dir, "dev.log"))
	if err != nil {
		t.Fatal(err)
	}
	// The banner names node 1; dev prints one line per node, but node 1
	// is enough: every node serves the whole API.
	scheme := "http://"
	for _, a := range extra {
		if a == "--https" {
			scheme = "https://"
		}
	}
	for _, w := range strings.Fields(p.banner) {
		if strings.HasPrefix(w, "http=") {
			return []string{scheme + strings.TrimPrefix(w, "http=")}
		}
	}
	t.Fatalf("tenure dev printed no address: %q", p.banner)
	return nil
}
