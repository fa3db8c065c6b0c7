package tenure

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDeadlineIsTTLShrunkByTwiceTheDriftMinusTheMarginFromTheSendTime(t *testing.T) {
	sent := 1234567891 * time.Nanosecond
	// 10 s · (1 − 2·0.001) − 150 ms = 9.980 s − 0.150 s.
	got := holderDeadline(sent, 10*time.Second, 1000, 150*time.Millisecond)
	if want := sent + 9830*time.Millisecond; got != want {
		t.Fatalf("deadline %v after the send, want %v", got-sent, want-sent)
	}
}

func TestDeadlineNeverReachesSentPlusTTLEvenWithoutMargin(t *testing.T) {
	for _, ms := range []int64{10, 11, 999, 1000, 30000, 86400000} {
		ttl := time.Duration(ms) * time.Millisecond
		if d := holderDeadline(0, ttl, 1000, 0); d >= ttl {
			t.Fatalf("ttl %v: deadline %v", ttl, d)
		}
	}
}

func TestDeadlineRoundsTheUsableTTLDownToMicroseconds(t *testing.T) {
	// 11 ms · 0.998 = 10 978 µs exactly; 10 ms·0.999998 (1 ppm) = 9 999.98 µs → 9 999 µs.
	if d := holderDeadline(0, 11*time.Millisecond, 1000, 0); d != 10978*time.Microsecond {
		t.Fatalf("11 ms: %v", d)
	}
	if d := holderDeadline(0, 10*time.Millisecond, 1, 0); d != 9999*time.Microsecond {
		t.Fatalf("10 ms at 1 ppm: %v", d)
	}
}

func TestAMarginLargerThanTheTTLGivesADeadlineAtTheSendTime(t *testing.T) {
	sent := 5 * time.Second
	if d := holderDeadline(sent, 100*time.Millisecond, 1000, time.Second); d != sent {
		t.Fatalf("deadline %v, want the send time %v", d, sent)
	}
}

func TestDeadlineCountsFromTheSendTimeNotTheReply(t *testing.T) {
	// A long poll sent 20 s ago that won just now: its grant of 10 s is
	// already past its deadline, however fresh the reply is.
	sent := time.Minute
	reply := sent + 20*time.Second
	if d := holderDeadline(sent, 10*time.Second, 1000, 0); d >= reply {
		t.Fatalf("deadline %v is after the reply %v", d, reply)
	}
}

func TestALargerDriftBoundGivesAnEarlierDeadline(t *testing.T) {
	// 10 s · (1 − 2·0.05) = 9 s, against 9.98 s at the default.
	if d := holderDeadline(0, 10*time.Second, 50000, 0); d != 9*time.Second {
		t.Fatalf("at 50 000 ppm: %v", d)
	}
	// A bound no cluster accepts is not from a tenure node: the default.
	if d := holderDeadline(0, 10*time.Second, 500000, 0); d != 9980*time.Millisecond {
		t.Fatalf("at an impossible bound: %v", d)
	}
}

func TestAGrantIsTrustedAsIsOnlyWhileMostOfItsLeaseIsLeft(t *testing.T) {
	sent, ttl := time.Hour, 9*time.Second
	for _, c := range []struct {
		after time.Duration
		want  bool
	}{{5 * time.Millisecond, true}, {2900 * time.Millisecond, true}, {3100 * time.Millisecond, false}, {20 * time.Second, false}} {
		if got := mostOfTheLeaseLeft(sent, sent+c.after, ttl, 1000, 0); got != c.want {
			t.Fatalf("%v after the send: %v, want %v", c.after, got, c.want)
		}
	}
}

func TestCeilMillis(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want int64
	}{{0, 0}, {time.Nanosecond, 1}, {time.Millisecond, 1}, {1500 * time.Microsecond, 2}, {30 * time.Second, 30000}} {
		if got := ceilMillis(c.d); got != c.want {
			t.Fatalf("ceilMillis(%v) = %d, want %d", c.d, got, c.want)
		}
	}
}

func TestBootTimeNeverGoesBack(t *testing.T) {
	a := BootTime{}.Now()
	b := BootTime{}.Now()
	if a <= 0 || b < a {
		t.Fatalf("%v then %v", a, b)
	}
}

func TestDefaultHolderIDsAreValidAndDiffer(t *testing.T) {
	a, b := DefaultHolderID(), DefaultHolderID()
	if a == b || checkHolder(a) != nil || checkHolder(b) != nil {
		t.Fatalf("%q, %q", a, b)
	}
	if len(strings.Split(a, ":")) < 3 {
		t.Fatalf("%q is not host:pid:random", a)
	}
}

func TestValuesAreCheckedBeforeSending(t *testing.T) {
	for _, c := range []struct {
		err   error
		field string
	}{
		{checkName(""), "name"},
		{checkName("a b"), "name"},
		{checkName(strings.Repeat("x", 129)), "name"},
		{checkHolder("web 1"), "holder"},
		{checkHolder(""), "holder"},
		{checkTTL(5 * time.Millisecond), "ttl"},
		{checkTTL(25 * time.Hour), "ttl"},
	} {
		var inv *InvalidError
		if !errors.Is(c.err, ErrInvalid) || !errors.As(c.err, &inv) || inv.Field != c.field {
			t.Fatalf("%v: want an invalid %s", c.err, c.field)
		}
	}
	if checkName("team-a/partition.7:primary") != nil || checkHolder("host:12:ab") != nil || checkTTL(10*time.Millisecond) != nil {
		t.Fatal("a valid value was refused")
	}
}

func TestEndpointsMustBePlainHTTPURLs(t *testing.T) {
	for _, e := range []string{"127.0.0.1:7400", "ftp://a:1", "http://a:1/v1", ""} {
		if _, err := New(WithEndpoints(e)); !errors.Is(err, ErrInvalid) {
			t.Fatalf("%q: %v", e, err)
		}
	}
	c, err := New(WithEndpoints("http://a:1/", " http://b:2"))
	if err != nil || len(c.Endpoints()) != 2 || c.Endpoints()[0] != "http://a:1" {
		t.Fatalf("%v, %v", c, err)
	}
	t.Setenv("TENURE_ENDPOINTS", "http://x:1,http://y:2")
	if c, err := New(); err != nil || c.Endpoints()[1] != "http://y:2" {
		t.Fatalf("from TENURE_ENDPOINTS: %v", err)
	}
	t.Setenv("TENURE_ENDPOINTS", "")
	if c, err := New(); err != nil || len(c.Endpoints()) != 3 || c.Endpoints()[0] != "http://127.0.0.1:7400" {
		t.Fatalf("the dev default: %v", err)
	}
}

func TestErrorsMatchTheirSentinels(t *testing.T) {
	for _, c := range []struct {
		err  error
		want error
	}{
		{&HeldError{}, ErrHeld},
		{&UnavailableError{}, ErrUnavailable},
		{&InvalidError{}, ErrInvalid},
		{&LostError{Reason: LostExpired}, ErrLost},
		{&ProtocolError{}, ErrProtocol},
	} {
		if !errors.Is(c.err, c.want) {
			t.Fatalf("%T does not match %v", c.err, c.want)
		}
		for _, other := range []error{ErrHeld, ErrUnavailable, ErrInvalid, ErrLost, ErrProtocol} {
			if other != c.want && errors.Is(c.err, other) {
				t.Fatalf("%T also matches %v", c.err, other)
			}
		}
	}
}
