package faults

import (
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
)

// proxyMode is what a proxy does with connections.
type proxyMode int

const (
	forward   proxyMode = iota // pass bytes both ways
	refuse                     // close every new connection at once: the server is down
	blackhole                  // accept new connections and never answer: the network is gone
)

// proxy forwards TCP connections to a Postgres server and can cut them all
// and refuse (or swallow) new ones for a while: a Postgres restart or a
// network partition, without touching the server other tests share.
type proxy struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu    sync.Mutex
	mode  proxyMode
	conns map[net.Conn]struct{} // both ends of every open connection
	wg    sync.WaitGroup
}

// newProxy listens on a free loopback port and forwards to target
// (host:port) until the test ends.
func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	p := &proxy{t: t, ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.closeAll()
		p.wg.Wait()
	})
	return p
}

// Addr is where clients connect.
func (p *proxy) Addr() string { return p.ln.Addr().String() }

// URL is dbURL with its host and port replaced by the proxy's.
func (p *proxy) URL(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		p.t.Fatalf("proxy: database URL: %v", err)
	}
	u.Host = p.Addr()
	return u.String()
}

// Set applies mode to the connections that come next. Entering refuse or
// blackhole closes every open connection; leaving blackhole closes the
// ones it swallowed.
func (p *proxy) Set(mode proxyMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if mode != forward || p.mode == blackhole {
		p.closeLocked()
	}
	p.mode = mode
}

// Cut closes every open connection and lets new ones through: what the
// clients of a restarted server see.
func (p *proxy) Cut() { p.closeAll() }

func (p *proxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeLocked()
}

func (p *proxy) closeLocked() {
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
	}
}

// track registers c so that closeAll reaches it; false if it must be
// closed instead (the mode changed meanwhile).
func (p *proxy) track(c net.Conn, want proxyMode) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode != want {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		p.mu.Lock()
		mode := p.mode
		p.mu.Unlock()
		switch mode {
		case refuse:
			_ = c.Close()
		case blackhole:
			// Held open, unanswered, until the mode changes.
			if !p.track(c, blackhole) {
				_ = c.Close()
			}
		default:
			p.wg.Add(1)
			go p.serve(c)
		}
	}
}

func (p *proxy) serve(client net.Conn) {
	defer p.wg.Done()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = client.Close()
		return
	}
	if !p.track(client, forward) || !p.track(server, forward) {
		p.untrack(client)
		p.untrack(server)
		return
	}
	var once sync.Once
	done := func() {
		once.Do(func() {
			p.untrack(client)
			p.untrack(server)
		})
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		_, _ = io.Copy(server, client)
		done()
	}()
	_, _ = io.Copy(client, server)
	done()
}
