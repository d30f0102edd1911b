package query

import (
	"net"
	"sync"
	"time"
)

// Defaults of the failed-authentication limit.
const (
	DefaultAuthFailures      = 20
	DefaultAuthFailureWindow = time.Minute
	// maxTrackedClients bounds the memory of the limiter.
	maxTrackedClients = 100_000
)

// failLimiter counts failed authentications by client address: a client
// that failed more than max times within window is refused (429) until the
// oldest of those failures is older than window. Every request of a
// refused client is refused, with a valid key too, so that guessing keys
// learns nothing (an answer of 200 would tell a guess was right).
type failLimiter struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu      sync.Mutex
	clients map[string][]time.Time // failures within the window, oldest first
}

func newFailLimiter(max int, window time.Duration, now func() time.Time) *failLimiter {
	return &failLimiter{max: max, window: window, now: now, clients: map[string][]time.Time{}}
}

// blocked reports whether client must wait, and how long.
func (l *failLimiter) blocked(client string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	f := l.recent(client, now)
	if len(f) < l.max {
		return 0, false
	}
	// Refused until all but max-1 of the failures are out of the window.
	return f[len(f)-l.max].Add(l.window).Sub(now), true
}

// failed records a failed authentication of client.
func (l *failLimiter) failed(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	f := l.recent(client, now)
	if f == nil && len(l.clients) >= maxTrackedClients {
		l.sweep(now)
	}
	if len(f) >= l.max {
		f = f[1:] // the oldest beyond max change nothing
	}
	l.clients[client] = append(f, now)
}

// recent is client's failures within the window, pruned.
func (l *failLimiter) recent(client string, now time.Time) []time.Time {
	f := l.clients[client]
	i := 0
	for i < len(f) && now.Sub(f[i]) >= l.window {
		i++
	}
	if i == len(f) {
		delete(l.clients, client)
		return nil
	}
	f = f[i:]
	l.clients[client] = f
	return f
}

// sweep forgets the clients without recent failures, then, if the limiter
// is still full (failures from that many addresses), arbitrary ones.
func (l *failLimiter) sweep(now time.Time) {
	for c, f := range l.clients {
		if now.Sub(f[len(f)-1]) >= l.window {
			delete(l.clients, c)
		}
	}
	for c := range l.clients {
		if len(l.clients) < maxTrackedClients*9/10 {
			break
		}
		delete(l.clients, c)
	}
}

// clientKey is the address the limiter counts a client by: an IPv4
// address, or the /64 of an IPv6 one (one host usually holds a whole /64).
func clientKey(ip string) string {
	addr := net.ParseIP(ip)
	if addr == nil {
		return ip
	}
	if addr.To4() != nil {
		return addr.String()
	}
	return (&net.IPNet{IP: addr.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
}
