//go:build unix

package redis

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// Rule 2: when Redis stops answering (SIGSTOP: the process is frozen, its
// sockets stay open, so no connection error tells the tracker), the cache
// stops serving within liveWindow of the last answered ping, and comes
// back when Redis does.
func TestCacheStopsServingWhenPongsStop(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	srv := standalone(t)
	s := newStore(t, Config{Addresses: []string{srv.Addr()}})
	key := storage.Key("frozen")
	create(t, s, key, time.Minute)
	warm(t, s, key)

	if err := srv.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP: %v", err)
	}
	stopped := time.Now()
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = srv.Signal(syscall.SIGCONT)
		}
	}
	defer resume()

	// The last pong may have been sent up to pingInterval before the
	// stop, so the cache may serve for liveWindow at most; give a loaded
	// machine some slack.
	bound := liveWindow + 500*time.Millisecond
	hits := 0
	var lastHit time.Duration
	for {
		before := time.Since(stopped)
		_, err := s.Load(t.Context(), key)
		if err != nil {
			if !errors.Is(err, storage.ErrUnavailable) {
				t.Fatalf("Load of a frozen Redis = %v, want ErrUnavailable", err)
			}
			break
		}
		hits++
		lastHit = before
		if lastHit > bound {
			t.Fatalf("the cache still served %s after Redis froze, want at most %s", lastHit, bound)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("the cache served %d Loads, the last %s after Redis froze; then Loads failed (after their timeouts)",
		hits, lastHit.Round(time.Millisecond))
	if s.cache.usable(time.Now()) {
		t.Fatal("a Load failed while the cache claims to be live")
	}
	if cachedKey(s, key) {
		// The tracker flushes within a ping interval of the lapse.
		time.Sleep(2 * pingInterval)
		if cachedKey(s, key) {
			t.Fatal("the cache kept its entries after its connection stopped answering")
		}
	}

	resume()
	warm(t, s, key) // on again, by itself
}

// A cache hit needs a quiet tracking connection: everything its reader took
// off the socket applied, and no unread byte on the socket. An invalidation
// that reached the socket but that the tracker goroutine has not read yet,
// or has read and not applied, must keep the cache from serving: this is
// what stops a browser's next request, through another instance after a
// write, from overtaking the invalidation.
func TestTrackedConnQuiet(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer peer.Close()

	tc := newTrackedConn(c, newLocalCache(10))
	if tc.raw == nil {
		t.Fatal("no raw socket under a TCP connection")
	}
	quiet := func() bool { _, ok := tc.quiet(); return ok }
	if !quiet() {
		t.Fatal("not quiet: nothing was sent")
	}
	if _, err := peer.Write([]byte("*3\r\n")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for quiet() {
		if time.Now().After(deadline) {
			t.Fatal("still quiet a second after a byte was sent")
		}
		time.Sleep(time.Millisecond)
	}
	// Taken off the socket but not applied yet: not quiet.
	buf := make([]byte, 16)
	if _, err := tc.Read(buf); err != nil {
		t.Fatal(err)
	}
	s, ok := tc.quiet()
	if ok || s%2 != 1 {
		t.Fatalf("quiet (state %d) with a message read and not applied", s)
	}
	// The reader asks for more (all it read applied): quiet again while
	// it waits, and the state it waits in is even.
	done := make(chan error, 1)
	go func() {
		_, err := tc.Read(buf)
		done <- err
	}()
	deadline = time.Now().Add(time.Second)
	for !quiet() {
		if time.Now().After(deadline) {
			t.Fatal("not quiet while the reader waits with everything applied")
		}
		time.Sleep(time.Millisecond)
	}
	s, _ = tc.quiet()
	// More bytes: the waiting reader takes them, and the state moves on,
	// so a lookup made meanwhile would not be vouched for.
	if _, err := peer.Write([]byte("$1\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if now := tc.state.Load(); now == s {
		t.Fatalf("state %d unchanged after the reader took bytes", now)
	}
}
