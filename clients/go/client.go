package tenure

import (
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"math/rand"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// DefaultAttemptTimeout is how long one request to one node may take.
	// The server answers within its own 3 s request deadline (503 after),
	// so a node silent for longer is treated as down.
	DefaultAttemptTimeout = 4 * time.Second
	// DefaultCallTimeout is how long one call may take, across all its
	// attempts and nodes.
	DefaultCallTimeout = 10 * time.Second
	// DevEndpoints are the endpoints of a local `tenure dev` cluster, used
	// when neither WithEndpoints nor TENURE_ENDPOINTS gives any.
	DevEndpoints = "http://127.0.0.1:7400,http://127.0.0.1:7401,http://127.0.0.1:7402"

	// connectTimeout: a node that does not accept a connection within
	// this is treated as down.
	connectTimeout = time.Second
	// maxAnswerBytes bounds what is buffered of an answer; answers are a
	// few hundred bytes.
	maxAnswerBytes = 64 << 10
	// maxAttempts bounds the attempts of one call, whatever its deadline.
	maxAttempts  = 64
	backoffFirst = 50 * time.Millisecond
	backoffMax   = time.Second
)

// Client is a handle on a tenure cluster. It is safe for concurrent use;
// make one per process and share it.
type Client struct {
	endpoints      []string
	http           *http.Client
	transport      *http.Transport
	preferred      atomic.Uint32 // the node to try first: the last one that answered
	attemptTimeout time.Duration
	callTimeout    time.Duration
	clock          Clock
	// auth is the Authorization header, nil without a token. Behind a
	// pointer so that printing a Client with %+v shows an address, never
	// the token.
	auth *credential
}

// credential is a bearer token, as the Authorization header sends it.
type credential struct{ header string }

// String and GoString keep the token out of anything that prints it.
func (*credential) String() string   { return "[token]" }
func (*credential) GoString() string { return "[token]" }

// Option configures a Client (see New).
type Option func(*options)

type options struct {
	endpoints      []string
	attemptTimeout time.Duration
	callTimeout    time.Duration
	clock          Clock
	token          string
	hasToken       bool
	tls            *tls.Config
}

// WithTLS sets how https:// endpoints are verified, and the client
// certificate to present to a cluster started with --client-ca. Without
// it, the CA and client certificate come from the PEM files named by
// TENURE_CA, TENURE_CERT and TENURE_KEY when those are set, else the
// system's CAs are trusted.
func WithTLS(config *tls.Config) Option {
	return func(o *options) { o.tls = config }
}

// tlsFromEnv is the TLS configuration TENURE_CA, TENURE_CERT and
// TENURE_KEY describe; nil when none is set.
func tlsFromEnv() (*tls.Config, error) {
	ca, cert, key := os.Getenv("TENURE_CA"), os.Getenv("TENURE_CERT"), os.Getenv("TENURE_KEY")
	if ca == "" && cert == "" && key == "" {
		return nil, nil
	}
	config := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, invalid("ca", "cannot read TENURE_CA: %v", err)
		}
		config.RootCAs = x509.NewCertPool()
		if !config.RootCAs.AppendCertsFromPEM(pem) {
			return nil, invalid("ca", "TENURE_CA file %s holds no PEM certificate", ca)
		}
	}
	if (cert == "") != (key == "") {
		return nil, invalid("cert", "a client certificate needs both TENURE_CERT and TENURE_KEY")
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, invalid("cert", "cannot use TENURE_CERT and TENURE_KEY: %v", err)
		}
		config.Certificates = []tls.Certificate{pair}
	}
	return config, nil
}

// WithEndpoints sets the nodes to talk to, as http://host:port. Any node
// serves any request.
func WithEndpoints(endpoints ...string) Option {
	return func(o *options) { o.endpoints = append([]string(nil), endpoints...) }
}

// WithTimeouts sets how long one request to one node may take (attempt)
// and one call across retries and nodes (call). The defaults are
// DefaultAttemptTimeout and DefaultCallTimeout. A long poll's attempt gets
// its wait on top.
func WithTimeouts(attempt, call time.Duration) Option {
	return func(o *options) { o.attemptTimeout, o.callTimeout = attempt, call }
}

// WithClock counts send times and deadlines on clock instead of BootTime.
func WithClock(clock Clock) Option {
	return func(o *options) { o.clock = clock }
}

// WithToken sets the bearer token that every request (watches included)
// sends as "Authorization: Bearer TOKEN", for a cluster started with
// --tokens. Surrounding whitespace is trimmed; WithToken("") sends no
// token, whatever TENURE_TOKEN_FILE says. Without WithToken the token is
// the trimmed contents of the file named by TENURE_TOKEN_FILE, when that
// is set. The token is never printed: not in errors, not by String.
func WithToken(token string) Option {
	return func(o *options) { o.token, o.hasToken = token, true }
}

// TokenFileEnv names the file that holds the default token (see
// WithToken).
const TokenFileEnv = "TENURE_TOKEN_FILE"

// New makes a Client. Endpoints come from WithEndpoints, else the
// comma-separated TENURE_ENDPOINTS, else DevEndpoints; the token from
// WithToken, else TENURE_TOKEN_FILE (an *InvalidError for the field
// "token" when that file cannot be read or is empty). Nothing is sent
// until the first call.
func New(opts ...Option) (*Client, error) {
	o := options{attemptTimeout: DefaultAttemptTimeout, callTimeout: DefaultCallTimeout, clock: BootTime{}}
	for _, opt := range opts {
		opt(&o)
	}
	if o.endpoints == nil {
		list := os.Getenv("TENURE_ENDPOINTS")
		if strings.TrimSpace(list) == "" {
			list = DevEndpoints
		}
		o.endpoints = strings.Split(list, ",")
	}
	var endpoints []string
	for _, e := range o.endpoints {
		e = strings.TrimRight(strings.TrimSpace(e), "/")
		if e == "" {
			continue
		}
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" {
			return nil, invalid("endpoints", "endpoint %q: write it as http://host:port or https://host:port", e)
		}
		endpoints = append(endpoints, e)
	}
	if len(endpoints) == 0 {
		return nil, invalid("endpoints", "no endpoints given")
	}
	if o.attemptTimeout <= 0 || o.callTimeout <= 0 {
		return nil, invalid("timeouts", "timeouts must be positive")
	}
	if o.clock == nil {
		return nil, invalid("clock", "no clock given")
	}
	auth, err := credentialFor(o)
	if err != nil {
		return nil, err
	}
	if o.tls == nil {
		if o.tls, err = tlsFromEnv(); err != nil {
			return nil, err
		}
	}
	transport := &http.Transport{
		// Talk to the nodes directly: a proxy would hide which node
		// answered, and turn refused connections into 502s.
		Proxy:       nil,
		DialContext: (&net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}).DialContext,
		// A few idle connections per node; closed before the server's own
		// 10 s idle limit, so a request rarely meets a connection the
		// server is closing.
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     5 * time.Second,
		TLSClientConfig:     o.tls,
	}
	return &Client{
		endpoints:      endpoints,
		http:           &http.Client{Transport: transport},
		transport:      transport,
		attemptTimeout: o.attemptTimeout,
		callTimeout:    o.callTimeout,
		clock:          o.clock,
		auth:           auth,
	}, nil
}

// credentialFor is the token of WithToken, else of TENURE_TOKEN_FILE; nil
// when there is none. Errors name the file, never the token.
func credentialFor(o options) (*credential, error) {
	token := o.token
	if !o.hasToken {
		file := os.Getenv(TokenFileEnv)
		if file == "" {
			return nil, nil
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, invalid("token", "%s: cannot read the token file: %v", TokenFileEnv, err)
		}
		token = strings.TrimSpace(string(data))
		if token == "" {
			return nil, invalid("token", "%s: the token file %s is empty", TokenFileEnv, file)
		}
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return nil, nil
	}
	for i := 0; i < len(token); i++ {
		// The server's token file separates fields with whitespace, and a
		// header cannot carry control characters: printable ASCII only.
		if b := token[i]; b <= ' ' || b > '~' {
			return nil, invalid("token", "the token has a space, a control character or a non-ASCII byte at offset %d; use printable ASCII without spaces", i)
		}
	}
	return &credential{header: "Bearer " + token}, nil
}

// String names the endpoints and says whether a token is set, without
// showing it.
func (c *Client) String() string {
	token := "no token"
	if c.auth != nil {
		token = "with a token"
	}
	return fmt.Sprintf("tenure.Client(%s, %s)", strings.Join(c.endpoints, ","), token)
}

// authorize adds the Authorization header to req, when a token is set.
func (c *Client) authorize(req *http.Request) {
	if c.auth != nil {
		req.Header.Set("Authorization", c.auth.header)
	}
}

// redact takes the token out of text from a node (an error message that
// quotes the request, say), so that no error carries it.
func (c *Client) redact(text string) string {
	if c.auth == nil || text == "" {
		return text
	}
	token := strings.TrimPrefix(c.auth.header, "Bearer ")
	return strings.ReplaceAll(text, token, "[token]")
}

// Endpoints are the nodes this client talks to.
func (c *Client) Endpoints() []string { return append([]string(nil), c.endpoints...) }

// Close closes idle connections. Leases and watches still running keep
// working (they open new ones); release them first.
func (c *Client) Close() error {
	c.transport.CloseIdleConnections()
	return nil
}

// now reads the client's clock.
func (c *Client) now() time.Duration { return c.clock.Now() }

var (
	jitterMu sync.Mutex
	jitterRG = rand.New(rand.NewSource(seed()))
)

// seed makes each process's jitter (and holder ids) differ, even for
// processes started at the same nanosecond.
func seed() int64 {
	var b [8]byte
	if _, err := crand.Read(b[:]); err != nil {
		return time.Now().UnixNano() ^ int64(os.Getpid())
	}
	return int64(binary.LittleEndian.Uint64(b[:]))
}

// jittered is a pause uniformly in [0, ceiling] ("full jitter"), so that
// clients that failed together do not retry together.
func jittered(ceiling time.Duration) time.Duration {
	if ceiling <= 0 {
		return 0
	}
	jitterMu.Lock()
	defer jitterMu.Unlock()
	return time.Duration(jitterRG.Int63n(int64(ceiling) + 1))
}

func random32() uint32 {
	jitterMu.Lock()
	defer jitterMu.Unlock()
	return jitterRG.Uint32()
}
