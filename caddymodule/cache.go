package caddymodule

import (
	"hash/maphash"
	"net/http"
	"sync"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// verifiedCookie is what one cookie value decoded to. The same value always
// decodes to the same thing under the same secrets, so it is cached:
// verifying and decrypting a cookie costs far more than the rest of a
// request. Only values that verified are cached, and lifetimes are still
// checked on every request against the times inside.
type verifiedCookie struct {
	stale    bool   // only an older secret verified it
	audience string // the audience it verified under: another is a miss

	// Server stores.
	id       string
	storeKey string
	previous bool      // a cookie-store session (previous_store cookie) to move
	browser  bool      // a browser-session cookie (maxage.go)
	lifeSet  time.Time // when X-Session-Max-Age last set the deadline

	// Cookie store.
	payload cookiePayload
	headers []headerPair // the session's forwarded headers, precomputed
}

// headerPair is one X-Session-* header to send upstream. Requests get
// their own []string for each value: a later handler may edit r.Header in
// place.
type headerPair struct {
	name  string // canonical
	value string
	end   int // where value ends in the shared string, while building
}

// cookieCache holds recently verified cookie values, bounded: past its size
// a random entry of the shard goes, which keeps a flood of fresh sessions
// from costing more than a miss.
type cookieCache struct {
	seed   maphash.Seed
	shards [cacheShards]cacheShard
}

const (
	cacheShards   = 16
	cachePerShard = 1024
	// maxCachedValue keeps big cookie-store sessions out of the cache: they
	// are rare, and would make its memory bound loose.
	maxCachedValue = 8 << 10
)

type cacheShard struct {
	mu sync.RWMutex
	m  map[string]*verifiedCookie
}

func newCookieCache() *cookieCache {
	c := &cookieCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*verifiedCookie)
	}
	return c
}

func (c *cookieCache) shard(value string) *cacheShard {
	return &c.shards[maphash.String(c.seed, value)%cacheShards]
}

// get returns the cached decoding of value, or nil.
func (c *cookieCache) get(value string) *verifiedCookie {
	sh := c.shard(value)
	sh.mu.RLock()
	v := sh.m[value]
	sh.mu.RUnlock()
	return v
}

// put caches the decoding of value.
func (c *cookieCache) put(value string, v *verifiedCookie) {
	if len(value) > maxCachedValue {
		return
	}
	sh := c.shard(value)
	sh.mu.Lock()
	if len(sh.m) >= cachePerShard {
		for k := range sh.m { // map order is random enough
			delete(sh.m, k)
			break
		}
	}
	sh.m[value] = v
	sh.mu.Unlock()
}

// headerNames caches the canonical header name of each session key: a
// key's header name never changes, and computing it on every request would
// cost an allocation per key.
type headerNames struct {
	mu sync.RWMutex
	m  map[string]string
}

// maxHeaderNames bounds the name cache; keys past it are computed each
// time.
const maxHeaderNames = 4096

func (n *headerNames) get(key string) string {
	n.mu.RLock()
	name, ok := n.m[key]
	n.mu.RUnlock()
	if ok {
		return name
	}
	name = http.CanonicalHeaderKey(storage.HeaderName(key))
	n.mu.Lock()
	if n.m == nil {
		n.m = make(map[string]string)
	}
	if len(n.m) < maxHeaderNames {
		n.m[key] = name
	}
	n.mu.Unlock()
	return name
}
