package redis

import (
	"hash/maphash"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// DefaultLocalCache is how many sessions the local read cache holds when
// Config.LocalCache is zero.
const DefaultLocalCache = 10000

// liveWindow is how old the latest answered ping may be while the cache
// serves: past it, Redis may have sent invalidations that have not arrived,
// so every Load goes to Redis. It bounds the staleness an undetected
// failure of the invalidation connection can cause. pingInterval is how
// often the tracker pings, a third of the window so that one slow pong
// does not turn the cache off.
const (
	liveWindow   = 1500 * time.Millisecond
	pingInterval = 500 * time.Millisecond
)

// maxCacheShards bounds the number of shards; each has its own lock and
// sequence number.
const maxCacheShards = 64

// localCache holds decoded sessions by store key, for Loads that would
// otherwise make a round trip to Redis.
//
// With one standalone server (Config.URL, or a single address) reached
// without TLS, reads of a session that has not changed since this process
// last read it are served from memory, without a round trip
// (Config.LocalCache sizes the cache or turns it off). Redis itself says
// when an entry must go: a dedicated connection of the store runs CLIENT
// TRACKING ON REDIRECT <its own id> BCAST PREFIX <KeyPrefix> and
// subscribes to __redis__:invalidate (RESP2), so Redis 6 or later sends it
// the name of every key under the prefix that any client writes, deletes
// or expires, normally well under a millisecond after the write
// (tracking.go). The rules that keep the cache honest:
//
//  1. An invalidation must not be overtaken. A global epoch (bumped by every
//     flush and every change of state) and a sequence number per shard of
//     keys (bumped by every invalidation message of a key of the shard and
//     by every local eviction) are noted by Load before its HGETALL; the
//     reply is inserted only if both are unchanged and the cache is usable.
//     The invalidation and the reply travel on different connections, so
//     without this an older reply arriving after the invalidation of a
//     newer write would be cached for good.
//  2. The cache is usable only while its connection is known to be live:
//     it is pinged every 500 ms with the send time as payload, and serves
//     only while the latest ping answered was sent less than 1.5 s ago.
//     Redis answers a ping after every invalidation it sent before it, on
//     the same connection, so an entry served is never older than the last
//     1.5 s. Otherwise Loads go to Redis and the cache is emptied. A
//     connection error, a reconnection or a refused tracking command also
//     empties and disables it, until the SUBSCRIBE of a new connection is
//     confirmed.
//  3. If Redis refuses tracking (older than 6, an ACL without the CLIENT
//     command or the __redis__:invalidate channel, a renamed command), the
//     cache stays off, the store works as without it, and Config.Log gets
//     one line saying so (tracking is tried again now and then, silently).
//  4. Writes through this Store (Merge, Touch, Confirm, Delete, Rotate,
//     DeleteByValue) evict their keys locally when they return, so that
//     this process reads its own writes at once, whatever the timing of
//     their invalidations. Only live sessions are cached, and an entry is
//     served only while Record.Live.
//  5. Sentinel and Cluster get no cache: tracking is per server, and after
//     a failover or a resharding the tracking connection could stay with a
//     server that no longer receives the writes, live and silent, so that
//     no rule above would catch it.
//
// A hit also needs the tracking connection to be quiet, before the lookup
// and still after it: everything its reader took off the socket applied
// (the reader waits for bytes before taking them, and says so), and no
// unread byte on the socket (one non-blocking peek per hit). So an
// invalidation that has reached this host is never overtaken by a request
// that came after it, even before the tracker goroutine has run. TLS hides
// decrypted bytes from the peek: a TLS connection gets no cache. Redis
// writes the invalidations of a write in the same event-loop iteration as
// its reply to the writer, so a browser's next request, which must first
// get the writer's answer, finds the invalidation here
// (TestCacheReadAfterWriteAcrossInstances checks this 300 times in a row;
// without the check it fails within a few dozen). What is left is a network
// that delays the invalidation to this instance longer than the writer's
// answer takes to reach the browser and its next request to reach here;
// and an undetected failure of the tracking connection (a frozen Redis, a
// silent network), which can serve a session for at most about 1.5 s after
// its last change was missed. An unreachable Redis lets reads of recently
// read sessions succeed from memory for at most that long before they fail
// fast as usual.
type localCache struct {
	seed     maphash.Seed
	perShard int
	shards   []cacheShard

	// base is the origin of the monotonic times below, in nanoseconds
	// since base.
	base time.Time

	// epoch is bumped by every flush and every change of state (enable,
	// disable): a Load that saw another epoch before its HGETALL does not
	// insert its reply.
	epoch atomic.Uint64

	// enabled is true while a tracking connection is subscribed.
	enabled atomic.Bool

	// answered is when the latest ping that Redis answered was sent (or
	// when the current connection was opened): every invalidation of a
	// write Redis ran before then has been applied.
	answered atomic.Int64

	// watch, when set, must vouch for a hit: no invalidation was waiting
	// to be applied from before the lookup to after it
	// (tracker.quietSince, tracker.stillQuiet).
	watch interface {
		quietSince() (quietToken, bool)
		stillQuiet(quietToken) bool
	}
}

// cacheShard is one lock's worth of the cache.
type cacheShard struct {
	mu sync.RWMutex
	// seq is bumped, under mu, by every eviction of a key of the shard:
	// an invalidation message or a local write.
	seq atomic.Uint64
	m   map[string]*storage.Record
	_   [64]byte // keep neighbouring shards' locks off one cache line
}

// cacheTicket is what a Load notes before its HGETALL, to insert the reply
// only if nothing overtook it.
type cacheTicket struct {
	shard *cacheShard
	epoch uint64
	seq   uint64
}

// newLocalCache returns an empty, disabled cache of about size entries.
func newLocalCache(size int) *localCache {
	n := min(size, maxCacheShards)
	c := &localCache{
		seed:     maphash.MakeSeed(),
		perShard: (size + n - 1) / n,
		shards:   make([]cacheShard, n),
		base:     time.Now(),
	}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*storage.Record)
	}
	return c
}

// mono returns t as nanoseconds since c.base, on the monotonic clock.
func (c *localCache) mono(t time.Time) int64 {
	return int64(t.Sub(c.base))
}

// shard returns the shard of a store key.
func (c *localCache) shard(key string) *cacheShard {
	return &c.shards[maphash.String(c.seed, key)%uint64(len(c.shards))]
}

// usable reports whether the cache may serve and take entries at now:
// enabled, and the invalidation connection answered a ping sent within
// liveWindow.
func (c *localCache) usable(now time.Time) bool {
	return c.enabled.Load() && c.mono(now)-c.answered.Load() <= int64(liveWindow)
}

// get returns a copy of the live session under key, or nil.
func (c *localCache) get(key string, now time.Time) *storage.Record {
	if !c.usable(now) {
		return nil
	}
	sh := c.shard(key)
	if !sh.lookup(key).Live(now) {
		return nil // a miss needs no peek at the tracking connection
	}
	if c.watch == nil {
		return copyRecord(sh.lookup(key))
	}
	// Quiet before the lookup that counts, and still after it: an
	// invalidation that had arrived was applied before it (so the entry
	// is gone), or keeps the hit from being served.
	tok, ok := c.watch.quietSince()
	if !ok {
		return nil
	}
	rec := sh.lookup(key)
	if !rec.Live(now) || !c.watch.stillQuiet(tok) {
		return nil
	}
	return copyRecord(rec)
}

// lookup returns the entry under key, or nil.
func (sh *cacheShard) lookup(key string) *storage.Record {
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.m[key]
}

// begin returns the ticket of a Load about to ask Redis for key; ok is
// false when the cache cannot take the reply anyway.
func (c *localCache) begin(key string, now time.Time) (t cacheTicket, ok bool) {
	if !c.usable(now) {
		return t, false
	}
	// The epoch first: a flush bumps it before it clears the shards.
	t.epoch = c.epoch.Load()
	t.shard = c.shard(key)
	t.seq = t.shard.seq.Load()
	return t, true
}

// put inserts rec, read from Redis under t, unless something overtook the
// read. The cache keeps rec: the caller must not change it afterwards.
func (c *localCache) put(t cacheTicket, key string, rec *storage.Record) {
	sh := t.shard
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.seq.Load() != t.seq || c.epoch.Load() != t.epoch || !c.usable(time.Now()) {
		return
	}
	if _, there := sh.m[key]; !there && len(sh.m) >= c.perShard {
		// Full: drop whichever entry map iteration yields first, a
		// pseudo-random one, at no bookkeeping cost on the hit path.
		for k := range sh.m {
			delete(sh.m, k)
			break
		}
	}
	sh.m[key] = rec
}

// evict drops key and stops any Load of it in flight from inserting.
func (c *localCache) evict(key string) {
	sh := c.shard(key)
	sh.mu.Lock()
	sh.seq.Add(1)
	delete(sh.m, key)
	sh.mu.Unlock()
}

// flush drops every entry and stops every Load in flight from inserting.
func (c *localCache) flush() {
	c.epoch.Add(1)
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		clear(sh.m)
		sh.mu.Unlock()
	}
}

// enable turns the cache on once a tracking connection opened at
// connected (a mono time) is subscribed to the invalidations.
func (c *localCache) enable(connected int64) {
	c.flush()
	c.setAnswered(connected)
	c.enabled.Store(true)
	c.epoch.Add(1)
}

// disable turns the cache off and empties it.
func (c *localCache) disable() {
	c.enabled.Store(false)
	c.flush()
}

// setAnswered records that every invalidation Redis sent before sent (a
// mono time) has been applied.
func (c *localCache) setAnswered(sent int64) {
	for {
		cur := c.answered.Load()
		if sent <= cur || c.answered.CompareAndSwap(cur, sent) {
			return
		}
	}
}

// len returns the number of entries, for tests.
func (c *localCache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// copyRecord returns a copy of rec that its caller may change: a new
// Values map. The values' bytes are shared: no caller changes the bytes
// of a json.RawMessage it got from a store (storage.Apply builds new
// ones, and the handler only replaces values), as storetest requires.
func copyRecord(rec *storage.Record) *storage.Record {
	out := *rec
	out.Values = maps.Clone(rec.Values)
	return &out
}
