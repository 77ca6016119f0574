package redis

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// invalidateChannel is where Redis sends the invalidation messages of a
// RESP2 tracking redirect.
const invalidateChannel = "__redis__:invalidate"

// Pauses of the tracker between connection attempts.
const (
	// silenceLimit is how long the invalidation connection may stay
	// silent (it gets a pong every pingInterval) before it is dropped and
	// opened again.
	silenceLimit = 3 * time.Second
	// retryMin and retryMax bound the pause after a failed connection,
	// doubling in between.
	retryMin = 100 * time.Millisecond
	retryMax = 5 * time.Second
	// retryRefused is the pause after Redis refused tracking: it is
	// tried again now and then, silently, in case Redis was upgraded or
	// its ACL changed.
	retryRefused = time.Minute
)

// tracker keeps one connection to Redis subscribed to the invalidations of
// every key under the prefix (CLIENT TRACKING ON REDIRECT <itself> BCAST
// PREFIX <prefix>, in RESP2), applies them to the cache, pings it to prove
// it live, and turns the cache off whenever it cannot vouch for it. It
// starts on the first Load, not in New: New must not connect.
type tracker struct {
	cache  *localCache
	client *goredis.Client // dedicated: only the tracking connection
	prefix string
	log    func(string)

	connID atomic.Int64 // CLIENT ID of the current connection, for tests

	// conn is the current tracking connection, for quiet.
	conn atomic.Pointer[trackedConn]

	// connected is when the current connection was opened (mono time):
	// the cache's liveness starts there once it is subscribed.
	connected atomic.Int64

	// running is true once start ran: the lock-free check on every Load.
	running atomic.Bool

	mu      sync.Mutex
	started bool
	stopped bool
	stop    chan struct{}
	done    chan struct{}
	ps      *goredis.PubSub // the current subscription, for Close

	refusalLogged bool // touched only by the run goroutine
}

// newTracker returns a tracker for cache with a dedicated client built
// from opts, the options of a standalone server.
func newTracker(cache *localCache, opts *goredis.Options, prefix string, log func(string)) *tracker {
	t := &tracker{
		cache:  cache,
		prefix: prefix,
		log:    log,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	o := *opts
	o.PoolSize, o.MinIdleConns, o.MaxIdleConns, o.MaxActiveConns = 1, 0, 1, 0
	o.Protocol = 2 // the redirect to a pub/sub connection is RESP2's way
	o.OnConnect = t.onConnect
	dial := opts.Dialer
	if dial == nil {
		dial = goredis.NewDialer(opts)
	}
	o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		t.cache.disable()
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc := newTrackedConn(c, cache)
		t.conn.Store(tc)
		return tc, nil
	}
	t.client = goredis.NewClient(&o)
	cache.watch = t
	return t
}

// quietSince returns a token when no invalidation can be waiting on the
// tracking connection: every byte its reader took off the socket has been
// applied, and the socket holds no unread byte. A cache hit needs it, and
// stillQuiet(token) after the lookup, so that an invalidation that reached
// this host, however briefly, is never overtaken by a request that arrived
// after it (a browser's next request after a write through another
// instance, say) just because the tracker goroutine had not run yet. It
// costs one non-blocking peek at the socket per hit.
func (t *tracker) quietSince() (quietToken, bool) {
	c := t.conn.Load()
	if c == nil {
		return quietToken{}, false
	}
	s, ok := c.quiet()
	return quietToken{c, s}, ok
}

// stillQuiet reports whether the reader has taken nothing off the socket
// since quietSince returned tok.
func (t *tracker) stillQuiet(tok quietToken) bool {
	return t.conn.Load() == tok.conn && tok.conn.state.Load() == tok.state
}

// quietToken is what quietSince saw.
type quietToken struct {
	conn  *trackedConn
	state uint64
}

// trackedConn is the tracking connection: the moment a read or a write
// fails, or it is closed, the cache turns off. go-redis reports a broken
// pub/sub connection only after it has tried to open another, which can
// take a dial timeout.
type trackedConn struct {
	net.Conn
	cache *localCache

	// raw is the socket under Conn, for peeking at unread bytes; nil
	// when there is none to peek at (TLS keeps bytes of its own, so the
	// store gives a TLS connection no local cache: Config.localCacheSize).
	raw syscall.RawConn

	// state counts the reader's progress. It turns odd just before the
	// reader takes bytes off the socket, and even again when go-redis
	// next asks for more: go-redis asks only once it has handed every
	// whole message read so far to the tracker, which applies each one
	// before it asks for the next. So an even state, unchanged, with no
	// unread byte on the socket, means no invalidation that reached this
	// host is waiting to be applied.
	state atomic.Uint64
}

func newTrackedConn(c net.Conn, cache *localCache) *trackedConn {
	tc := &trackedConn{Conn: c, cache: cache}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			tc.raw = raw
		}
	}
	return tc
}

func (c *trackedConn) Read(p []byte) (int, error) {
	if c.raw != nil {
		if c.state.Load()%2 == 1 {
			c.state.Add(1) // everything read before has been applied
		}
		// Wait for bytes without taking them, then say so before
		// taking them.
		if err := c.raw.Read(func(fd uintptr) bool { return unread(fd) }); err != nil {
			c.cache.disable()
			return 0, err
		}
		c.state.Add(1)
	}
	n, err := c.Conn.Read(p)
	if err != nil {
		c.cache.disable()
	}
	return n, err
}

// quiet returns the reader's state and whether it is quiet: even (all
// it took applied) and no byte waiting on the socket. See
// tracker.quietSince.
func (c *trackedConn) quiet() (uint64, bool) {
	s := c.state.Load()
	if c.raw == nil || s%2 == 1 {
		return s, false
	}
	pending := true
	if err := c.raw.Control(func(fd uintptr) { pending = unread(fd) }); err != nil {
		return s, false
	}
	return s, !pending && c.state.Load() == s
}

func (c *trackedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		c.cache.disable()
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.cache.disable()
	return c.Conn.Close()
}

// start runs the tracker once; it does nothing after close.
func (t *tracker) start() {
	if t.running.Load() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.started || t.stopped {
		return
	}
	t.started = true
	t.running.Store(true)
	go t.run()
}

// close stops the tracker, waits for its goroutine and closes its client.
func (t *tracker) close() error {
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return nil
	}
	t.stopped = true
	close(t.stop)
	started, ps := t.started, t.ps
	t.mu.Unlock()
	if ps != nil {
		_ = ps.Close() // ends the goroutine's Receive
	}
	if started {
		<-t.done
	}
	t.cache.disable()
	return t.client.Close()
}

// onConnect turns tracking on for a new connection, redirected to the
// connection itself. Until its SUBSCRIBE is confirmed the cache is off:
// the previous connection may have missed invalidations, and this one
// drops them until it is subscribed.
func (t *tracker) onConnect(ctx context.Context, cn *goredis.Conn) error {
	t.cache.disable()
	t.connected.Store(t.cache.mono(time.Now()))
	id, err := cn.ClientID(ctx).Result()
	if err != nil {
		return err
	}
	t.connID.Store(id)
	return cn.Do(ctx, "CLIENT", "TRACKING", "ON", "REDIRECT", id, "BCAST", "PREFIX", t.prefix).Err()
}

// run keeps a subscription going until close, pausing between attempts.
func (t *tracker) run() {
	defer close(t.done)
	pause := retryMin
	for {
		began := time.Now()
		err := t.session()
		t.cache.disable()
		switch {
		case t.isStopped():
			return
		case refused(err):
			if !t.refusalLogged && t.log != nil {
				t.refusalLogged = true
				t.log("redis store: the local read cache is off: Redis refused client tracking (" + err.Error() +
					"); it needs Redis 6 or later, and an ACL that allows the CLIENT command and the " +
					invalidateChannel + " channel. Sessions are read from Redis on every request; " +
					"set local_cache off to silence this")
			}
			pause = retryRefused
		case time.Since(began) > retryMax:
			pause = retryMin // it was up a while: try again at once
		default:
			pause = min(2*pause, retryMax)
		}
		select {
		case <-t.stop:
			return
		case <-time.After(pause):
		}
	}
}

func (t *tracker) isStopped() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stopped
}

// session opens a tracking connection, subscribes it and applies what it
// receives until it fails or the tracker stops.
func (t *tracker) session() error {
	ctx := context.Background()
	ps := t.client.Subscribe(ctx) // no channel yet: does not connect
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		_ = ps.Close()
		return nil
	}
	t.ps = ps
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.ps = nil
		t.mu.Unlock()
		_ = ps.Close()
	}()

	// Connects, runs onConnect, then sends SUBSCRIBE.
	if err := ps.Subscribe(ctx, invalidateChannel); err != nil {
		return err
	}

	var wg sync.WaitGroup
	end := make(chan struct{})
	defer wg.Wait()
	defer close(end)
	wg.Go(func() { t.ping(ps, end) })

	for {
		msg, err := ps.ReceiveTimeout(ctx, silenceLimit)
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *goredis.Subscription:
			if m.Kind == "subscribe" && m.Channel == invalidateChannel {
				t.cache.enable(t.connected.Load())
			}
		case *goredis.Message:
			if m.Channel != invalidateChannel {
				continue
			}
			if len(m.PayloadSlice) == 0 {
				// Not a list of keys: go-redis passes no other form
				// (a FLUSHALL's null list is an error from Receive,
				// which ends the session and so flushes too).
				t.cache.flush()
				continue
			}
			for _, k := range m.PayloadSlice {
				if key, ok := strings.CutPrefix(k, t.prefix); ok {
					t.cache.evict(key)
				}
			}
		case *goredis.Pong:
			if sent, err := strconv.ParseInt(m.Payload, 10, 64); err == nil {
				t.cache.setAnswered(sent)
			}
		}
	}
}

// ping sends a PING carrying its send time every pingInterval until end;
// the pong, read by session, proves every invalidation sent before it
// arrived. While no recent ping was answered the cache is emptied (Load
// already bypasses it).
func (t *tracker) ping(ps *goredis.PubSub, end <-chan struct{}) {
	tick := time.NewTicker(pingInterval)
	defer tick.Stop()
	for {
		select {
		case <-end:
			return
		case now := <-tick.C:
			// A failed write makes go-redis reconnect (onConnect
			// disables the cache) or Receive fail: nothing to do here.
			_ = ps.Ping(context.Background(), strconv.FormatInt(t.cache.mono(now), 10))
			if !t.cache.usable(time.Now()) && t.cache.len() > 0 {
				t.cache.flush()
			}
		}
	}
}

// refused reports whether err is Redis turning tracking down (an old
// Redis, a renamed or forbidden CLIENT command, a forbidden channel)
// rather than a failure to reach it.
func refused(err error) bool {
	var rerr goredis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	msg := rerr.Error()
	return strings.HasPrefix(msg, "ERR") || strings.HasPrefix(msg, "NOPERM")
}
