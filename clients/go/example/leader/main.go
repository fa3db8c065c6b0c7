// Command leader is a service that campaigns for leadership and serves
// only while it leads. Run several against a tenure cluster (`tenure dev`
// starts one on this machine):
//
//	go run ./example/leader -id web-1 -listen 127.0.0.1:8081
//	go run ./example/leader -id web-2 -listen 127.0.0.1:8082
//
// One serves; stop it (Ctrl-C resigns, so the other takes over at once;
// kill -9 makes the other wait for the ttl).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	tenure "github.com/tenure-dev/tenure/clients/go"
)

func main() {
	id := flag.String("id", tenure.DefaultHolderID(), "this candidate's id, unique among the candidates")
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on while leading")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	c, err := tenure.New() // TENURE_ENDPOINTS, else the tenure dev ports
	if err != nil {
		log.Fatal(err)
	}
	// The margin covers the time this service needs to stop serving: it
	// stops that long before its lease could run out.
	e := c.Election("example-leader", tenure.TTL(5*time.Second), tenure.Margin(time.Second))
	for ctx.Err() == nil {
		log.Printf("%s: campaigning", *id)
		if err := e.Campaign(ctx, *id); err != nil {
			if ctx.Err() == nil {
				log.Printf("campaign: %v", err)
				time.Sleep(time.Second)
			}
			continue
		}
		lease := e.Lease()
		log.Printf("%s: leading with token %d", *id, lease.Token())
		serve(ctx, *listen, lease)
		resign, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := e.Resign(resign); err != nil && !errors.Is(err, tenure.ErrHeld) {
			log.Printf("resign: %v", err) // the lease ends by its ttl anyway
		}
		cancel()
		log.Printf("%s: no longer leading: %v", *id, lease.Err())
	}
}

// serve serves on addr until the lease is lost or ctx ends.
func serve(ctx context.Context, addr string, lease *tenure.Lease) {
	srv := &http.Server{Addr: addr, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Check before each action: between Done closing and the server
		// stopping, a request may still arrive.
		if !lease.Valid() {
			http.Error(w, "not the leader", http.StatusServiceUnavailable)
			return
		}
		// Pass the token to whatever this writes to, so that a store can
		// refuse a deposed leader's late writes.
		fmt.Fprintf(w, "leader %s, token %d\n", lease.Holder(), lease.Token())
	})}
	go func() {
		if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
			log.Printf("serve: %v", err)
		}
	}()
	select {
	case <-lease.Done():
	case <-ctx.Done():
	}
	// Stop at once: the margin is all the time there is.
	_ = srv.Close()
}
