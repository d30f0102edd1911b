// Package natsserver runs an embedded NATS server with JetStream, for
// `reportctl dev` when no server answers, for the benchmark and for tests.
// Production runs a real nats-server; nothing else links this package.
package natsserver

import (
	"errors"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Start runs a JetStream server on host:port (port -1 for any free one) with
// its store in dir, and waits until it accepts connections.
func Start(host string, port int, dir string) (*server.Server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	opts := &server.Options{Host: host, Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, err
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("embedded NATS server not ready after 10s")
	}
	return s, nil
}

// StartAt runs a JetStream server on the address of natsURL, so that other
// tools configured with the same URL reach it, with its store in dir.
func StartAt(natsURL, dir string) (*server.Server, error) {
	host, port := "127.0.0.1", 4222
	if u, err := url.Parse(natsURL); err == nil && u.Host != "" {
		if h := u.Hostname(); h != "" {
			host = h
		}
		if p, err := strconv.Atoi(u.Port()); err == nil {
			port = p
		}
	}
	return Start(host, port, dir)
}

// Answers reports whether a NATS server accepts connections at natsURL.
func Answers(natsURL string) bool {
	nc, err := nats.Connect(natsURL, nats.Timeout(time.Second))
	if err != nil {
		return false
	}
	nc.Close()
	return true
}
