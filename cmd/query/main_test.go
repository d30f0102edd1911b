package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/callreport/callreport/migrations/pgtest"
)

// TestRun starts the real program on a free port, reads through it and stops
// it the way SIGTERM does.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrs := make(chan net.Addr, 1)
	done := make(chan error, 1)
	args := []string{"-database-url", pgtest.URL(t), "-http-addr", "127.0.0.1:0", "-log-format", "json"}
	go func() { done <- run(ctx, args, io.Discard, func(a net.Addr) { addrs <- a }) }()

	var base string
	select {
	case a := <-addrs:
		base = "http://" + a.String()
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("not listening after a minute")
	}

	client := &http.Client{Timeout: 10 * time.Second}
	tests := []struct {
		path   string
		status int
		body   string
	}{
		{"/healthz", 200, `{"status":"ok"}`},
		{"/readyz", 200, `{"status":"ok"}`},
		{"/call-report/jobs/j1", 401, `{"statusCode":401,"message":"Unauthorized","error":"Unauthorized"}`},
	}
	for _, tt := range tests {
		res, err := client.Get(base + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tt.status || strings.TrimSpace(string(b)) != tt.body {
			t.Errorf("GET %s: %d %s, want %d %s", tt.path, res.StatusCode, b, tt.status, tt.body)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
}

func TestRunRefusesBadFlags(t *testing.T) {
	if err := run(context.Background(), []string{"-nope"}, io.Discard, nil); err == nil {
		t.Fatal("unknown flag accepted")
	}
	if err := run(context.Background(), []string{"extra"}, io.Discard, nil); err == nil {
		t.Fatal("stray argument accepted")
	}
}
