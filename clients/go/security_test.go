package tenure

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A client that trusts the dev CA locks over HTTPS; one that does not
// cannot.
func TestAClientThatTrustsTheCALocksOverHTTPS(t *testing.T) {
	dir := t.TempDir()
	urls := startDevIn(t, dir, "--https")
	pem, err := os.ReadFile(filepath.Join(dir, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatal("no CA certificate")
	}
	c := newClient(t, urls, WithTLS(&tls.Config{RootCAs: roots}))
	l, err := c.TryAcquire(testContext(t), "over-tls", Holder("me"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(testContext(t))
	untrusting := newClient(t, urls, WithTLS(&tls.Config{}), WithTimeouts(DefaultAttemptTimeout, 500*time.Millisecond))
	if _, err := untrusting.Get(testContext(t), "over-tls"); err == nil || errors.Is(err, ErrHeld) {
		t.Fatalf("an untrusted node answered: %v", err)
	}
}

// tenure dev gives grant keys: a release needs the grant's key, which
// only the holder has.
func TestAGrantKeyIsTheHoldersAlone(t *testing.T) {
	c := newClient(t, startDev(t))
	ctx := testContext(t)
	l, err := c.TryAcquire(ctx, "keyed", Holder("me"))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Key()) != 32 {
		t.Fatalf("key %q", l.Key())
	}
	if err := c.Release(ctx, "keyed", "me", l.Token()); !errors.Is(err, ErrDenied) {
		t.Fatalf("released without the key: %v", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// An operator forces a grant to end: the holder loses its lease at its
// next renewal.
func TestAnOperatorCanForceAGrantToEnd(t *testing.T) {
	c := newClient(t, startDev(t))
	ctx := testContext(t)
	l, err := c.TryAcquire(ctx, "forced", Holder("me"), TTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ForceRelease(ctx, "forced", l.Token()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("the holder never learnt it lost the lease")
	}
	if !errors.Is(l.Err(), ErrLost) {
		t.Fatalf("lost with %v", l.Err())
	}
}
