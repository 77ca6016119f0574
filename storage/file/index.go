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
// session file (a full scan, O(sessions on disk)), and counting lists every
// subfolder. Both are for operators' occasional use through the admin API,
// not for the request path. A store with many sessions that needs "log out
// everywhere" often should use Redis, which keeps a real index.

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

// DeleteByValue deletes every live session whose value of name is value
// (compact JSON text, see storage.IndexValue) and returns how many it
// deleted (storage.Indexer). It reads every session file that has not
// expired by its modification time, without locks; a match is re-read and
// removed under its subfolder's lock, so a session changed meanwhile is
// judged by its new contents.
func (s *Store) DeleteByValue(ctx context.Context, name string, value json.RawMessage) (int, error) {
	s.idx.mu.Lock()
	indexed := s.idx.refs[name] > 0
	s.idx.mu.Unlock()
	if !indexed {
		return 0, fmt.Errorf("session file store: %w: %q", storage.ErrNotIndexed, name)
	}
	deleted := 0
	err := s.eachShard(ctx, func(shard string, names []string) error {
		var match []string
		for _, key := range names {
			p, _ := s.path(key)
			rec, err := s.read(p, false)
			if err != nil {
				return err
			}
			if holds(rec, name, value, s.opts.Now()) {
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
			rec, err := s.read(p, true)
			if err != nil {
				return err
			}
			if !holds(rec, name, value, s.opts.Now()) {
				continue
			}
			if err := s.remove(p); err != nil {
				return err
			}
			deleted++
		}
		return nil
	})
	return deleted, err
}

// holds reports whether rec is live at now and holds value under name.
func holds(rec *storage.Record, name string, value json.RawMessage, now time.Time) bool {
	if !rec.Live(now) {
		return false
	}
	v, ok := rec.Values[name]
	return ok && bytes.Equal(v, value)
}

// Count returns how many sessions the store holds (storage.Counter): the
// session files whose modification time, which every write sets to the
// session's expiry, has not passed. It lists every subfolder but reads no
// file.
func (s *Store) Count(ctx context.Context) (int, error) {
	n := 0
	err := s.eachShard(ctx, func(_ string, names []string) error {
		n += len(names)
		return nil
	})
	return n, err
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
