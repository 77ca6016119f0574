package file

import (
	"maps"
	"os"
	"sync"

	"github.com/caddy-session/caddy-session/storage"
)

// readCache remembers decoded session files by file identity (inode,
// change time, size), so a read of an unchanged session costs one stat
// instead of open, read, close and a JSON decode. Every write replaces a
// file by rename (a new inode) and every metadata change moves its change
// time, which nothing can set back: a changed file never matches a stale
// entry, also when another process changed it.
type readCache struct {
	mu sync.Mutex
	m  map[string]cachedRecord
}

type cachedRecord struct {
	id  fileID
	rec *storage.Record
}

// maxCachedRecords bounds the cache; past it, an entry is dropped at random.
const maxCachedRecords = 10000

// get returns a copy of the record cached for key if fi is still the file
// it came from.
func (c *readCache) get(key string, id fileID) (*storage.Record, bool) {
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if !ok || e.id != id {
		return nil, false
	}
	rec := *e.rec
	rec.Values = maps.Clone(e.rec.Values)
	return &rec, true
}

// put caches rec, read from the file whose identity is id.
func (c *readCache) put(key string, id fileID, rec *storage.Record) {
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]cachedRecord)
	}
	if len(c.m) >= maxCachedRecords {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	stored := *rec
	stored.Values = maps.Clone(rec.Values)
	c.m[key] = cachedRecord{id: id, rec: &stored}
	c.mu.Unlock()
}

// drop forgets key.
func (c *readCache) drop(key string) {
	c.mu.Lock()
	delete(c.m, key)
	c.mu.Unlock()
}

// cachedRead reads the session file of key through the cache.
func (s *Store) cachedRead(key string, p paths) (*storage.Record, error) {
	fi, err := os.Stat(p.file)
	if err != nil {
		s.cache.drop(key)
		st, err := s.read(p, false) // reports a missing file or an error as read does
		return st.Record, err
	}
	id, ok := identity(fi)
	if ok {
		if rec, hit := s.cache.get(key, id); hit {
			return rec, nil
		}
	}
	st, err := s.read(p, false)
	if err == nil && st.Record != nil && ok {
		s.cache.put(key, id, st.Record)
	}
	return st.Record, err
}

// peek reads the session file of key through the cache without filling
// it, for scans (Count) that must not push the sessions in use out.
func (s *Store) peek(key string, p paths) (*storage.Record, error) {
	if fi, err := os.Stat(p.file); err == nil {
		if id, ok := identity(fi); ok {
			if rec, hit := s.cache.get(key, id); hit {
				return rec, nil
			}
		}
	}
	st, err := s.read(p, false)
	return st.Record, err
}
