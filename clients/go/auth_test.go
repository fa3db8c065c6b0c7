package tenure

// Bearer tokens against stub nodes: which requests carry the header, where
// the default token comes from, that a 401 or 403 is final, and that the
// token never shows in what the client prints.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const secretToken = "s3cret-Token_value"

// authStub is a node that grants, renews, releases, reads and watches,
// recording each request's method, path and Authorization header.
type authStub struct {
	url  string
	mu   sync.Mutex
	seen []string // "METHOD path?query auth"
	puts atomic.Int32
}

func newAuthStub(t *testing.T) *authStub {
	s := &authStub{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seen = append(s.seen, r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("Authorization"))
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		grant := `{"state":"held","holder":"h","token":3,"remaining_ms":1000,"ttl_ms":1000,"max_drift_ppm":1000}`
		switch r.Method {
		case http.MethodPut:
			if s.puts.Add(1) == 1 {
				w.WriteHeader(http.StatusCreated)
			}
			fmt.Fprint(w, grant)
		case http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		default:
			fmt.Fprintln(w, grant) // a read, or one watch line and the end of the stream
		}
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

func (s *authStub) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

func TestEveryRequestCarriesTheToken(t *testing.T) {
	node := newAuthStub(t)
	c := newClient(t, []string{node.url}, WithToken("  "+secretToken+"\n"))
	ctx := testContext(t)
	if _, err := c.Get(ctx, "jobs/x"); err != nil {
		t.Fatal(err)
	}
	l, err := c.TryAcquire(ctx, "jobs/x", TTL(time.Second), Holder("h"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a renewal", func() bool { return node.puts.Load() >= 2 })
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	states, err := c.Watch(wctx, "jobs/x")
	if err != nil {
		t.Fatal(err)
	}
	<-states
	stop()
	for range states {
	}
	kinds := map[string]bool{}
	for _, r := range node.requests() {
		method, rest, _ := strings.Cut(r, " ")
		uri, auth, _ := strings.Cut(rest, " ")
		if auth != "Bearer "+secretToken {
			t.Errorf("%s %s sent Authorization %q", method, uri, auth)
		}
		kind := method
		if strings.Contains(uri, "watch=true") {
			kind = "watch"
		}
		kinds[kind] = true
	}
	for _, k := range []string{"GET", "PUT", "DELETE", "watch"} {
		if !kinds[k] {
			t.Errorf("no %s request seen: %v", k, node.requests())
		}
	}
}

func TestWithoutATokenNoHeaderIsSent(t *testing.T) {
	t.Setenv(TokenFileEnv, "")
	node := newAuthStub(t)
	c := newClient(t, []string{node.url})
	if _, err := c.Get(testContext(t), "x"); err != nil {
		t.Fatal(err)
	}
	if got := node.requests(); len(got) != 1 || !strings.HasSuffix(got[0], "/v1/locks/x ") {
		t.Fatalf("requests %q, want one without Authorization", got)
	}
}

func TestTheDefaultTokenComesFromTheTokenFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("\n "+secretToken+" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(TokenFileEnv, file)
	node := newAuthStub(t)
	ctx := testContext(t)

	c := newClient(t, []string{node.url})
	if _, err := c.Get(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	// WithToken wins over the file, and WithToken("") sends none.
	other := newClient(t, []string{node.url}, WithToken("other"))
	if _, err := other.Get(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	none := newClient(t, []string{node.url}, WithToken(""))
	if _, err := none.Get(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	got := node.requests()
	want := []string{"Bearer " + secretToken, "Bearer other", ""}
	if len(got) != len(want) {
		t.Fatalf("requests %q", got)
	}
	for i, w := range want {
		if !strings.HasSuffix(got[i], "/v1/locks/x "+w) {
			t.Errorf("request %d: %q, want Authorization %q", i, got[i], w)
		}
	}
}

func TestABadTokenOrTokenFileIsRefusedWithoutShowingTheToken(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		what string
		file string
		opts []Option
	}{
		{"a missing token file", filepath.Join(dir, "missing"), nil},
		{"an empty token file", empty, nil},
		{"a token with a space", "", []Option{WithToken(secretToken + " " + secretToken)}},
		{"a token with a newline", "", []Option{WithToken(secretToken + "\n" + secretToken)}},
		{"a token with a non-ASCII letter", "", []Option{WithToken(secretToken + "é")}},
	}
	for _, tc := range cases {
		t.Setenv(TokenFileEnv, tc.file)
		_, err := New(append([]Option{WithEndpoints("http://127.0.0.1:1")}, tc.opts...)...)
		var inv *InvalidError
		if !errors.As(err, &inv) || inv.Field != "token" {
			t.Errorf("%s: %v, want an *InvalidError for the token", tc.what, err)
			continue
		}
		if strings.Contains(err.Error(), secretToken) {
			t.Errorf("%s: the error shows the token: %v", tc.what, err)
		}
	}
}

func TestTheTokenIsNeverPrinted(t *testing.T) {
	// A node that quotes the token back in its refusal.
	node := newStub(t, always(http.StatusUnauthorized, `{"error":"unknown token `+secretToken+`","field":null}`))
	c := newClient(t, []string{node.url}, WithToken(secretToken))
	_, err := c.Get(testContext(t), "x")
	printed := []string{
		fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c), fmt.Sprintf("%+v %#v", reflect.ValueOf(c).Elem(), reflect.ValueOf(c).Elem()),
		fmt.Sprint(err), fmt.Sprintf("%+v %#v", err, err),
	}
	for _, p := range printed {
		if strings.Contains(p, secretToken) {
			t.Errorf("the token is printed: %s", p)
		}
	}
	if !strings.Contains(c.String(), "with a token") {
		t.Errorf("String() = %q, want it to say a token is set", c.String())
	}
}

func TestADenialIsFinalOnEveryNode(t *testing.T) {
	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			denying := newStub(t, always(status, `{"error":"no","field":null}`))
			live := newStub(t, always(200, heldBody))
			c := newClient(t, []string{denying.url, live.url}, WithToken(secretToken))
			ctx := testContext(t)
			calls := map[string]func() error{
				"Get":        func() error { _, err := c.Get(ctx, "x"); return err },
				"TryAcquire": func() error { _, err := c.TryAcquire(ctx, "x", Holder("h")); return err },
				"Acquire":    func() error { _, err := c.Acquire(ctx, "x", Holder("h"), Wait(time.Second)); return err },
				"Release":    func() error { return c.Release(ctx, "x", "h", 3) },
				"Leader":     func() error { _, err := c.Election("x").Leader(ctx); return err },
			}
			for name, call := range calls {
				c.preferred.Store(0) // start at the denying node
				before := denying.requests.Load()
				err := call()
				var denied *DeniedError
				if !errors.As(err, &denied) || denied.Status != status || denied.Message != "no" || !errors.Is(err, ErrDenied) {
					t.Errorf("%s: %v, want a *DeniedError %d", name, err, status)
				}
				if errors.Is(err, ErrInvalid) || errors.Is(err, ErrUnavailable) {
					t.Errorf("%s: %v also matches another sentinel", name, err)
				}
				if n := denying.requests.Load() - before; n != 1 {
					t.Errorf("%s: %d requests to the denying node, want 1", name, n)
				}
			}
			if n := live.requests.Load(); n != 0 {
				t.Errorf("%d requests moved on to the other node, want none", n)
			}
		})
	}
}

func TestADenialWithoutAJSONBodyIsStillADenial(t *testing.T) {
	node := newStub(t, always(http.StatusUnauthorized, "Unauthorized"))
	c := newClient(t, []string{node.url})
	_, err := c.Get(testContext(t), "x")
	var denied *DeniedError
	if !errors.As(err, &denied) || denied.Status != http.StatusUnauthorized || node.requests.Load() != 1 {
		t.Fatalf("%v after %d requests, want one *DeniedError 401", err, node.requests.Load())
	}
}

func TestADeniedWatchEndsWithTheDenial(t *testing.T) {
	denying := newStub(t, always(http.StatusForbidden, `{"error":"no read permission","field":null}`))
	live := newAuthStub(t)
	c := newClient(t, []string{denying.url, live.url}, WithToken(secretToken))
	c.preferred.Store(0)
	states, err := c.Watch(testContext(t), "x")
	if err != nil {
		t.Fatal(err)
	}
	var last State
	n := 0
	for s := range states {
		last = s
		n++
	}
	var denied *DeniedError
	if n != 1 || last.State != StateUnavailable || !errors.As(last.Err, &denied) || denied.Status != http.StatusForbidden {
		t.Fatalf("%d states, the last %+v, want one unavailable state with a *DeniedError 403", n, last)
	}
	if got := live.requests(); len(got) != 0 {
		t.Fatalf("the watch moved on to the other node: %q", got)
	}
}

// The same against `tenure dev --tokens FILE`: one cluster for every case,
// so the tests stay fast.
func TestTokensAgainstARealCluster(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	grants := `# token permission prefix
jobs-lock-0123456789   lock  jobs/
reader-0123456789      read  *

admin-token-0123456789 admin *  # everything
`
	if err := os.WriteFile(file, []byte(grants), 0o600); err != nil {
		t.Fatal(err)
	}
	urls := startDev(t, "--tokens", file)
	ctx := testContext(t)
	denied := func(t *testing.T, err error, status int) {
		t.Helper()
		var d *DeniedError
		if !errors.As(err, &d) || d.Status != status || !errors.Is(err, ErrDenied) {
			t.Fatalf("%v, want a *DeniedError %d", err, status)
		}
		if d.Message == "" {
			t.Errorf("a %d without the node's message", status)
		}
	}

	t.Run("a lock token acquires and releases under its prefix only", func(t *testing.T) {
		c := newClient(t, urls, WithToken("jobs-lock-0123456789"))
		l, err := c.TryAcquire(ctx, "jobs/x", TTL(5*time.Second), Holder("worker-1"))
		if err != nil {
			t.Fatal(err)
		}
		if s, err := c.Get(ctx, "jobs/x"); err != nil || s.Holder != "worker-1" || s.Token != l.Token() {
			t.Fatalf("read %+v, %v", s, err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		_, err = c.TryAcquire(ctx, "other", TTL(5*time.Second), Holder("worker-1"))
		denied(t, err, http.StatusForbidden)
		_, err = c.Get(ctx, "other")
		denied(t, err, http.StatusForbidden)
	})

	t.Run("no token or an unknown one is a 401", func(t *testing.T) {
		for _, opt := range []Option{WithToken(""), WithToken("not-a-token-0123456789")} {
			c := newClient(t, urls, opt)
			_, err := c.Get(ctx, "jobs/x")
			denied(t, err, http.StatusUnauthorized)
			_, err = c.TryAcquire(ctx, "jobs/x", Holder("worker-1"))
			denied(t, err, http.StatusUnauthorized)
		}
	})

	t.Run("a read token reads and watches but does not acquire", func(t *testing.T) {
		c := newClient(t, urls, WithToken("reader-0123456789"))
		if _, err := c.Get(ctx, "jobs/x"); err != nil {
			t.Fatal(err)
		}
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		states, err := c.Watch(wctx, "jobs/x")
		if err != nil {
			t.Fatal(err)
		}
		if s := <-states; s.State != StateFree || s.Err != nil {
			t.Fatalf("first watch state %+v, want free", s)
		}
		_, err = c.TryAcquire(ctx, "jobs/x", Holder("worker-1"))
		denied(t, err, http.StatusForbidden)
		err = c.Release(ctx, "jobs/x", "worker-1", 1)
		denied(t, err, http.StatusForbidden)
	})

	t.Run("a watch without a token ends with the denial", func(t *testing.T) {
		c := newClient(t, urls, WithToken(""))
		states, err := c.Watch(ctx, "jobs/x")
		if err != nil {
			t.Fatal(err)
		}
		var last State
		for s := range states {
			last = s
		}
		denied(t, last.Err, http.StatusUnauthorized)
	})

	t.Run("an admin token may do anything", func(t *testing.T) {
		c := newClient(t, urls, WithToken("admin-token-0123456789"))
		l, err := c.TryAcquire(ctx, "other", TTL(5*time.Second), Holder("worker-1"))
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	})
}
