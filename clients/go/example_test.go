package tenure_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	tenure "github.com/tenure-dev/tenure/clients/go"
)

// Hold a lock while doing a job; stop if the lease is lost.
func ExampleClient_Acquire() {
	c, err := tenure.New(tenure.WithEndpoints("http://127.0.0.1:7400", "http://127.0.0.1:7401"))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // wait at most a minute
	defer cancel()
	l, err := c.Acquire(ctx, "nightly-report", tenure.TTL(10*time.Second))
	var held *tenure.HeldError
	if errors.As(err, &held) {
		log.Fatalf("still held by %s (token %d)", held.Holder, held.Token)
	} else if err != nil {
		log.Fatal(err)
	}
	defer l.Release(context.Background())

	done := make(chan error, 1)
	go func() { done <- writeReport(l.Token()) }()
	select {
	case <-l.Done():
		log.Printf("stopping: %v", l.Err())
	case err := <-done:
		fmt.Println("report written:", err)
	}
}

// Take a lock only if it is free.
func ExampleClient_TryAcquire() {
	c, _ := tenure.New()
	l, err := c.TryAcquire(context.Background(), "migrations")
	if errors.Is(err, tenure.ErrHeld) {
		fmt.Println("another process is migrating")
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	defer l.Release(context.Background())
	// ... migrate, passing l.Token() to the database ...
}

// Campaign, lead while the leadership lasts, then resign.
func ExampleElection() {
	c, _ := tenure.New()
	e := c.Election("scheduler", tenure.TTL(5*time.Second))
	ctx := context.Background()
	if err := e.Campaign(ctx, "web-1"); err != nil {
		log.Fatal(err)
	}
	select {
	case <-e.Done():
		log.Printf("no longer leader: %v", e.Lease().Err())
	case <-scheduleJobs(e.Token()):
	}
	_ = e.Resign(ctx) // the next candidate leads at once
}

// Follow who leads.
func ExampleElection_Observe() {
	c, _ := tenure.New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for leader := range c.Election("scheduler").Observe(ctx) {
		if leader.ID == "" {
			fmt.Println("nobody leads")
		} else {
			fmt.Printf("%s leads with token %d\n", leader.ID, leader.Token)
		}
	}
}

func writeReport(token uint64) error            { return nil }
func scheduleJobs(token uint64) <-chan struct{} { return make(chan struct{}) }
