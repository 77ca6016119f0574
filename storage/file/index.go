package file

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// The file store keeps no index: finding sessions by value reads every
// session file (a full scan, O(sessions on disk)), and so does counting
// (to tell New sessions from confirmed ones). Both are for operators'
// occasional use through the admin API, not for the request path. A store
// with many sessions that needs "log out everywhere" often should use
// Redis, which keeps a real index.
//
// Values are compared as JSON values, not as text: the value asked for and
// each session's value are brought to storage.IndexValue's canonical form
// before they are compared, so a session a PHP upstream wrote as
// {"customerId":"gid:\/\/shopify\/Customer\/7001"} is found with
// "gid://shopify/Customer/7001", "M\u00fcller" with "Müller" and 1e2 with
// 100, while "42" and 42 stay different. Sessions written before Index was
// first called are found too, since nothing is indexed ahead of time.

// indexRefs counts the configurations that made each name searchable.
type indexRefs struct {
	mu   sync.Mutex
	refs map[string]int
}

// Index makes name searchable by DeleteByValue (storage.Indexer). The file
// store has nothing to maintain, since DeleteByValue scans every file: it
// only counts the callers, so that DeleteByValue refuses a name that no
// configuration indexes, as every store does.
func (s *Store) Index(name string) (release func()) {
	s.idx.mu.Lock()
	if s.idx.refs == nil {
		s.idx.refs = make(map[string]int)
	}
	s.idx.refs[name]++
	s.idx.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.idx.mu.Lock()
			if s.idx.refs[name]--; s.idx.refs[name] <= 0 {
				delete(s.idx.refs, name)
			}
			s.idx.mu.Unlock()
		})
	}
}

// DeleteByValue deletes every live session whose value of name equals
// value as a JSON value (storage.IndexValue: "gid:\/\/x" finds a session
// holding "gid://x", 1e2 one holding 100) and, when audience is not empty,
// whose audience is audience; it returns how many it deleted per audience
// (storage.Indexer). It reads every session file that has not expired by
// its modification time, without locks; a match is re-read and removed
// under its subfolder's lock, so a session changed meanwhile is judged by
// its new contents.
func (s *Store) DeleteByValue(ctx context.Context, name string, value json.RawMessage, audience string) (map[string]int, error) {
	s.idx.mu.Lock()
	indexed := s.idx.refs[name] > 0
	s.idx.mu.Unlock()
	if !indexed {
		return nil, fmt.Errorf("session file store: %w: %q", storage.ErrNotIndexed, name)
	}
	want, err := storage.IndexValue(value)
	if err != nil {
		return nil, fmt.Errorf("session file store: delete by value: %w", err)
	}
	m := matcher{name: name, value: want, audience: audience}
	deleted := make(map[string]int)
	err = s.eachShard(ctx, func(shard string, names []string) error {
		var match []string
		for _, key := range names {
			p, _ := s.path(key)
			st, err := s.read(p, false)
			if err != nil {
				return err
			}
			if m.holds(st.Record, s.opts.Now()) {
				match = append(match, key)
			}
		}
		if len(match) == 0 {
			return nil
		}
		p, _ := s.path(match[0])
		unlock, err := s.lock(p.shard)
		if err != nil {
			return err
		}
		defer unlock()
		for _, key := range match {
			p, _ := s.path(key)
			st, err := s.read(p, true)
			if err != nil {
				return err
			}
			if !m.holds(st.Record, s.opts.Now()) {
				continue
			}
			if err := s.remove(p); err != nil {
				return err
			}
			deleted[st.Audience]++
		}
		return nil
	})
	return deleted, err
}

// matcher is what DeleteByValue looks for.
type matcher struct {
	name     string
	value    json.RawMessage // in storage.IndexValue form
	audience string          // "" for any
}

// holds reports whether rec is live at now, of the audience wanted, and
// holds the value under the name, compared as JSON values.
func (m matcher) holds(rec *storage.Record, now time.Time) bool {
	if !rec.Live(now) || m.audience != "" && rec.Audience != m.audience {
		return false
	}
	v, ok := rec.Values[m.name]
	if !ok {
		return false
	}
	if bytes.Equal(v, m.value) {
		return true // already canonical: most values the handler writes
	}
	c, err := storage.IndexValue(v)
	return err == nil && bytes.Equal(c, m.value)
}

// Count returns how many live sessions the store holds, New and confirmed
// (storage.Counter). It lists every subfolder and skips the files whose
// modification time, which every write sets to the session's expiry, has
// passed; it reads the others (through the read cache when it holds them,
// without filling it) to tell New sessions from confirmed ones.
func (s *Store) Count(ctx context.Context) (storage.Counts, error) {
	var c storage.Counts
	now := s.opts.Now()
	err := s.eachShard(ctx, func(_ string, names []string) error {
		for _, key := range names {
			p, _ := s.path(key)
			rec, err := s.peek(key, p)
			switch {
			case err != nil:
				return err
			case !rec.Live(now):
			case rec.New:
				c.New++
			default:
				c.Confirmed++
			}
		}
		return nil
	})
	return c, err
}

// eachShard calls fn with each subfolder's session files that have not
// expired by their modification time.
func (s *Store) eachShard(ctx context.Context, fn func(shard string, keys []string) error) error {
	top, err := os.ReadDir(s.dir)
	if err != nil {
		return unavailable("list directory", err)
	}
	now := s.opts.Now()
	for _, d := range top {
		shard := d.Name()
		if !d.IsDir() || len(shard) != 2 || !validHex(shard) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		entries, err := os.ReadDir(filepath.Join(s.dir, shard))
		if err != nil {
			return unavailable("list folder", err)
		}
		var keys []string
		for _, e := range entries {
			name := e.Name()
			if strings.HasPrefix(name, tempPrefix) || !validKey(name) || name[:2] != shard {
				continue
			}
			info, err := e.Info()
			if err != nil || !info.ModTime().After(now) {
				continue // gone meanwhile, or expired
			}
			keys = append(keys, name)
		}
		if len(keys) > 0 {
			if err := fn(shard, keys); err != nil {
				return err
			}
		}
	}
	return nil
}

var (
	_ storage.Indexer = (*Store)(nil)
	_ storage.Counter = (*Store)(nil)
)
